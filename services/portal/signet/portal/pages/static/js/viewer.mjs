// The documents, rendered in the browser with the vendored pdf.js (no eval, no CDN):
// one canvas per page, as wide as the card, sharp on high-density screens.
import * as pdfjs from "/static/vendor/pdfjs/pdf.min.mjs";

pdfjs.GlobalWorkerOptions.workerSrc = "/static/vendor/pdfjs/pdf.worker.min.mjs";

async function render(viewer) {
  // (without JavaScript the <noscript> page images show instead)
  const loading = document.createElement("p");
  loading.className = "help loading";
  loading.textContent = viewer.dataset.loading;
  viewer.appendChild(loading);
  try {
    const task = pdfjs.getDocument({
      url: viewer.dataset.src,
      isEvalSupported: false,
      standardFontDataUrl: "/static/vendor/pdfjs/standard_fonts/",
      enableXfa: false,
    });
    const pdf = await task.promise;
    const width = Math.max(viewer.clientWidth, 280);
    const density = window.devicePixelRatio || 1;
    for (let number = 1; number <= pdf.numPages; number++) {
      const page = await pdf.getPage(number);
      const scale = width / page.getViewport({ scale: 1 }).width;
      const viewport = page.getViewport({ scale: scale * density });
      const canvas = document.createElement("canvas");
      canvas.className = "pdf-page";
      canvas.width = Math.floor(viewport.width);
      canvas.height = Math.floor(viewport.height);
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", `${viewer.dataset.label} ${number} / ${pdf.numPages}`);
      viewer.appendChild(canvas);
      await page.render({ canvas, canvasContext: canvas.getContext("2d"), viewport }).promise;
    }
    viewer.dataset.rendered = String(pdf.numPages);
    loading.remove();
  } catch (error) {
    loading.textContent = viewer.dataset.failed;
    viewer.dataset.rendered = "failed";
    console.error("pdf preview:", error);
  }
}

for (const viewer of document.querySelectorAll(".viewer")) render(viewer);
