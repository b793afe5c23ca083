// A line dragged across the image, drawn while the mouse moves, with its length beside its end: in millimetres
// where the image has a scale, else in pixels. On release the two ends go back to Python in the image's pixels.
class MeasureLine {
  constructor(root) {
    root.innerHTML = `<div class="stage measure"><img alt="the case image to measure on" draggable="false">
      <svg preserveAspectRatio="none"><line class="dragged" visibility="hidden"></line></svg>
      <div class="length" role="status" aria-live="polite"></div></div>`;
    this.stage = root.querySelector(".stage");
    this.image = root.querySelector("img");
    this.svg = root.querySelector("svg");
    this.line = root.querySelector(".dragged");
    this.label = root.querySelector(".length");
    this.args = { image_width: 1, image_height: 1, mm_per_pixel: null };
    this.start = null;
    this.stage.addEventListener("pointerdown", (event) => {
      this.start = this.point(event);
      this.stage.setPointerCapture(event.pointerId);
      this.show(this.start, this.start);
    });
    this.stage.addEventListener("pointermove", (event) => { if (this.start) this.show(this.start, this.point(event)); });
    this.stage.addEventListener("pointerup", (event) => this.release(event));
    window.addEventListener("resize", () => this.fit());
  }

  point(event) {
    const box = this.image.getBoundingClientRect();
    const x = Math.min(Math.max(event.clientX - box.left, 0), box.width);
    const y = Math.min(Math.max(event.clientY - box.top, 0), box.height);
    return [x * this.args.image_width / box.width, y * this.args.image_height / box.height];
  }

  show(a, b) {
    for (const [name, value] of [["x1", a[0]], ["y1", a[1]], ["x2", b[0]], ["y2", b[1]]]) this.line.setAttribute(name, value);
    this.line.setAttribute("visibility", "visible");
    const pixels = Math.hypot(b[0] - a[0], b[1] - a[1]);
    const scale = this.args.mm_per_pixel;
    this.label.textContent = scale ? `${(pixels * scale).toFixed(1)} mm` : `${Math.round(pixels)} pixels`;
    this.label.style.display = "block";
    const box = this.image.getBoundingClientRect();
    const right = b[0] * box.width / this.args.image_width, down = b[1] * box.height / this.args.image_height;
    this.label.style.left = `${Math.max(Math.min(right + 12, box.width - this.label.offsetWidth - 4), 0)}px`;
    this.label.style.top = `${Math.max(down - 30, 4)}px`;
  }

  release(event) {
    if (!this.start) return;
    const end = this.point(event), start = this.start;
    this.start = null;
    if (Math.hypot(end[0] - start[0], end[1] - start[1]) < 2) return;  // a click, not a length
    this.show(start, end);
    StreamlitFrame.value({ x1: start[0], y1: start[1], x2: end[0], y2: end[1], width: this.args.image_width,
                           height: this.args.image_height, at: Date.now() });
  }

  fit() { StreamlitFrame.height(this.stage.getBoundingClientRect().height); }

  render(args) {
    this.args = args;
    if (this.image.getAttribute("src") !== args.src) {
      this.image.onload = () => this.fit();
      this.image.setAttribute("src", args.src);
    }
    drawLines(this.svg, args.lines, args.image_width, args.image_height);
    this.svg.appendChild(this.line);  // the dragged line above the saved ones
    this.fit();
  }
}
