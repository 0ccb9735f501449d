"""Small Sphinx fixes for the course book.

1. Duplicate scripts. Jupyter Book 1.x ends up with sphinx-thebe's inline
   configuration script twice on every page (once with filename None, once with
   ''), so the browser reports "Identifier 'THEBE_JS_URL' has already been
   declared". Drop such duplicates.

2. MathJax offline. ``mathjax_path`` in _config.yml names a file relative to
   ``_static``; this extension copies the pinned MathJax 3 that the PyPI package
   ``django-static-mathjax`` (requirements.txt) ships into ``_static/mathjax`` of
   every HTML build, so formulas render without any CDN.

3. One exercise number. Exercises are written ``:::{exercise} 2.1 Title``; the
   chapter's number (2.1) becomes the exercise's number everywhere Sphinx shows
   one (the box, ``{ref}``/``{numref}`` cross-references, "Solution to
   Exercise 2.1"), replacing sphinx-exercise's book-wide counter, and is removed
   from the subtitle, so readers see "Exercise 2.1 — Title".
"""
import re
import shutil
from pathlib import Path

from docutils import nodes
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

# "2.1 Title": the chapter's exercise number before the title
EXERCISE_NUMBER = re.compile(r"^\s*(\d+)\.(\d+)\s+")
MATHJAX_VERSION = "3.2.2"
# what tex-mml-chtml.js loads on demand (fonts, TeX extensions, menu, accessibility)
MATHJAX_PARTS = ("tex-mml-chtml.js", "input", "output", "ui", "a11y", "sre", "adaptors")


# -- 1. duplicate scripts ---------------------------------------------------------
def _script_key(script):
    attributes = getattr(script, "attributes", {}) or {}
    filename = getattr(script, "filename", str(script)) or None  # '' and None both mean "inline"
    return filename, tuple(sorted((k, str(v)) for k, v in attributes.items()))


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


# -- 2. MathJax shipped with the book ---------------------------------------------
def mathjax_source() -> Path:
    """The ``es5`` folder of the installed MathJax copy (django-static-mathjax)."""
    import importlib.util
    import json

    spec = importlib.util.find_spec("mathjax")
    root = Path(spec.origin).parent / "static" / "mathjax" if spec and spec.origin else None
    if root is None or not (root / "es5" / "tex-mml-chtml.js").is_file():
        raise ExtensionError(
            "MathJax is not installed: the book ships its own copy so formulas render offline. "
            "Install requirements.txt (bash scripts/setup_env.sh), which pins django-static-mathjax.")
    version = json.loads((root / "package.json").read_text()).get("version")
    if version != MATHJAX_VERSION:
        raise ExtensionError(f"MathJax {version} is installed but the book is tested with "
                             f"{MATHJAX_VERSION}; reinstall requirements.txt.")
    return root / "es5"


def _copy_mathjax(app):
    path = app.config.mathjax_path or ""
    if app.builder.format != "html" or "://" in path or path.startswith("/"):
        return
    if Path(path).parts[0] != "mathjax":
        raise ExtensionError(f"mathjax_path is {path!r}; the local copy lives in _static/mathjax/.")
    source, target = mathjax_source(), Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, target / part)
    licence = source.parent / "LICENSE"
    shutil.copy2(licence, target / "LICENSE")


# -- 3. the chapter's exercise number ---------------------------------------------
def _exercise_nodes(doctree):
    from sphinx_exercise.nodes import exercise_enumerable_node

    return list(doctree.findall(exercise_enumerable_node))


def _take_number(exercise):
    """Remove "2.1 " from the exercise's subtitle; return (2, 1) or None."""
    from sphinx_exercise.nodes import exercise_subtitle

    for subtitle in exercise.findall(exercise_subtitle):
        first = subtitle.children[0] if subtitle.children else None
        if isinstance(first, nodes.Text):
            match = EXERCISE_NUMBER.match(str(first))
            if match:
                subtitle.replace(first, nodes.Text(str(first)[match.end():]))
                return int(match.group(1)), int(match.group(2))
        return None
    return None


def _read_numbers(app, doctree):
    env = app.env
    numbers = getattr(env, "course_exercise_numbers", {})
    env.course_exercise_numbers = numbers
    numbers[env.docname] = {}
    registry = getattr(env, "sphinx_exercise_registry", {})
    for exercise in _exercise_nodes(doctree):
        number = _take_number(exercise)
        label = exercise.get("label", "")
        if number is None:
            continue
        numbers[env.docname][exercise["ids"][0]] = number
        if label in registry:
            _take_number(registry[label]["node"])  # the copy that solution titles read
        expected = f"ex-{number[0]}-{number[1]}"
        if label.startswith("ex-") and label != expected:
            logger.warning(f"exercise {number[0]}.{number[1]} has label {label!r}; "
                           f"expected {expected!r}", location=exercise)


def _purge_numbers(app, env, docname):
    getattr(env, "course_exercise_numbers", {}).pop(docname, None)


def _merge_numbers(app, env, docnames, other):
    numbers = getattr(env, "course_exercise_numbers", {})
    for docname in docnames:
        numbers[docname] = getattr(other, "course_exercise_numbers", {}).get(docname, {})
    env.course_exercise_numbers = numbers


def _assign_numbers(app, env):
    """Runs after Sphinx numbered every enumerable node: chapter numbers win."""
    for docname, found in getattr(env, "course_exercise_numbers", {}).items():
        if found:
            table = env.toc_fignumbers.setdefault(docname, {}).setdefault("exercise", {})
            table.update(found)
    return []


def _dash(container, number_text_before):
    """Turn "… (Title)" into "… — Title" in a resolved title."""
    children = container.children
    for i, child in enumerate(children):
        if isinstance(child, nodes.Text) and str(child) == " (":
            if isinstance(children[-1], nodes.Text) and str(children[-1]) == ")":
                container.remove(children[-1])
                container.replace(child, nodes.Text("— " if not number_text_before else " — "))
            return


def _setup_title_transform(app):
    from sphinx.transforms.post_transforms import SphinxPostTransform
    from sphinx_exercise.nodes import exercise_enumerable_node, solution_node

    class DashInExerciseTitles(SphinxPostTransform):
        """After sphinx-exercise resolved the titles (priorities 20-22)."""

        default_priority = 23

        def run(self):
            numbered = set()
            for table in getattr(self.env, "course_exercise_numbers", {}).values():
                numbered.update(table)
            for exercise in self.document.findall(exercise_enumerable_node):
                if exercise["ids"] and exercise["ids"][0] in numbered and exercise.children:
                    if isinstance(exercise.children[0], nodes.title):
                        _dash(exercise.children[0], number_text_before=False)
            for solution in self.document.findall(solution_node):
                for reference in solution.children[0].findall(nodes.reference):
                    if reference.get("refuri", "").split("#")[-1].startswith("ex-"):
                        _dash(reference, number_text_before=True)

    app.add_post_transform(DashInExerciseTitles)


def setup(app):
    app.setup_extension("sphinx_exercise")
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    app.connect("builder-inited", _copy_mathjax)
    app.connect("doctree-read", _read_numbers, priority=600)
    app.connect("env-purge-doc", _purge_numbers)
    app.connect("env-merge-info", _merge_numbers)
    app.connect("env-get-updated", _assign_numbers, priority=900)
    _setup_title_transform(app)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
