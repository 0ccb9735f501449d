// The static slice viewer: moves every image of a slider's group to the chosen
// pre-rendered frame. `root` is the viewer's <div>; the frames (base64 PNG, one
// list per panel) and the slice index of each frame (one list per group) are in
// the JSON <script> inside it. Loads nothing from the network.
var data = JSON.parse(root.querySelector("script.tu-slice-data").textContent);
var images = root.querySelectorAll("img");
root.querySelectorAll("input[type=range]").forEach(function (slider) {
  slider.addEventListener("input", function () {
    var group = +slider.dataset.group;
    var frame = +slider.value;
    root.querySelector('[data-readout="' + group + '"]').textContent = data.slices[group][frame];
    images.forEach(function (image, panel) {
      if (+image.dataset.group === group) {
        image.src = "data:image/png;base64," + data.frames[panel][frame];
      }
    });
  });
});
