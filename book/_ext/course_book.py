"""Small Sphinx fixes for the course book.

Jupyter Book 1.x ends up with sphinx-thebe's inline configuration script twice
on every page (once with filename None, once with ''), so the browser reports
"Identifier 'THEBE_JS_URL' has already been declared". Drop such duplicates.
"""


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


def setup(app):
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
