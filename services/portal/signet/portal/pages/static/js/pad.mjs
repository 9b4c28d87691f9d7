// The handwritten signature, drawn with the vendored signature_pad; the form sends the
// PNG (a data URL) in a hidden field, so the page stays a plain form post.
import SignaturePad from "/static/vendor/signature_pad/signature_pad.min.js";

const form = document.getElementById("pad-form");
const canvas = document.getElementById("pad");
const image = document.getElementById("pad-image");
const error = document.getElementById("pad-error");
const pad = new SignaturePad(canvas, { penColor: "#10214b", minWidth: 0.8, maxWidth: 2.6 });

function fit() {
  // the canvas' pixels follow its CSS size and the screen's density; resizing clears it
  const density = Math.max(window.devicePixelRatio || 1, 1);
  const strokes = pad.toData();
  canvas.width = canvas.offsetWidth * density;
  canvas.height = canvas.offsetHeight * density;
  canvas.getContext("2d").scale(density, density);
  pad.clear();
  pad.fromData(strokes);
}

// a new stroke answers the "draw first" message
pad.addEventListener("beginStroke", () => error.classList.add("hidden"));
window.addEventListener("resize", fit);
fit();

document.getElementById("pad-clear").addEventListener("click", () => {
  pad.clear();
  canvas.focus();
});

form.addEventListener("submit", (event) => {
  if (pad.isEmpty()) {
    event.preventDefault();
    error.textContent = form.dataset.empty;
    error.classList.remove("hidden");
    canvas.focus();
    return;
  }
  image.value = pad.toDataURL("image/png");
});

document.getElementById("pad-submit").disabled = false;
form.dataset.ready = "1";
