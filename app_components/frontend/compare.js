// Two images of one lesion side by side, zoomed and moved together: the wheel zooms both about the same point of
// the lesion, a drag moves both, a double click shows both whole again. Each image keeps its own outline.
class ComparePair {
  constructor(root) {
    root.innerHTML = `<div class="pair">${["left", "right"].map((side) => `<div class="side ${side}">
      <p class="title"></p><div class="stage"><div class="moving"><img alt="" draggable="false">
      <svg preserveAspectRatio="none"></svg></div></div></div>`).join("")}</div>
      <p class="hint">Scroll to zoom both, drag to move both, double-click to see both whole.</p>`;
    this.root = root;
    this.sides = [...root.querySelectorAll(".side")];
    this.view = { zoom: 1, x: 0, y: 0 };  // the shown part: a zoom, and the top-left corner as a share of the image
    this.dragging = null;
    for (const side of this.sides) {
      const stage = side.querySelector(".stage");
      stage.addEventListener("wheel", (event) => { event.preventDefault(); this.zoomAt(stage, event); }, { passive: false });
      stage.addEventListener("pointerdown", (event) => {
        this.dragging = { stage, x: event.clientX, y: event.clientY, from: { ...this.view } };
        stage.setPointerCapture(event.pointerId);
      });
      stage.addEventListener("pointermove", (event) => this.moveBy(event));
      stage.addEventListener("pointerup", () => { this.dragging = null; });
      stage.addEventListener("dblclick", () => { this.view = { zoom: 1, x: 0, y: 0 }; this.apply(); });
    }
    window.addEventListener("resize", () => this.fit());
  }

  zoomAt(stage, event) {
    const box = stage.getBoundingClientRect();
    const fx = (event.clientX - box.left) / box.width, fy = (event.clientY - box.top) / box.height;
    const zoom = Math.min(Math.max(this.view.zoom * (event.deltaY < 0 ? 1.25 : 0.8), 1), 12);
    const px = this.view.x + fx / this.view.zoom, py = this.view.y + fy / this.view.zoom;  // the point under the mouse
    this.view = this.clamped({ zoom, x: px - fx / zoom, y: py - fy / zoom });
    this.apply();
  }

  moveBy(event) {
    if (!this.dragging) return;
    const box = this.dragging.stage.getBoundingClientRect(), from = this.dragging.from;
    this.view = this.clamped({ zoom: from.zoom, x: from.x - (event.clientX - this.dragging.x) / box.width / from.zoom,
                               y: from.y - (event.clientY - this.dragging.y) / box.height / from.zoom });
    this.apply();
  }

  clamped(view) {
    const most = 1 - 1 / view.zoom;
    return { zoom: view.zoom, x: Math.min(Math.max(view.x, 0), most), y: Math.min(Math.max(view.y, 0), most) };
  }

  apply() {
    for (const side of this.sides) {
      const stage = side.querySelector(".stage"), moving = side.querySelector(".moving");
      const box = stage.getBoundingClientRect();
      moving.style.transform = `scale(${this.view.zoom}) translate(${-this.view.x * box.width}px, ${-this.view.y * box.height}px)`;
      moving.dataset.view = `${this.view.zoom.toFixed(4)} ${this.view.x.toFixed(4)} ${this.view.y.toFixed(4)}`;
    }
  }

  fit() { StreamlitFrame.height(this.root.getBoundingClientRect().height + 4); this.apply(); }

  render(args) {
    args.images.forEach((given, k) => {
      const side = this.sides[k];
      side.querySelector(".title").textContent = given.title;
      const image = side.querySelector("img");
      image.setAttribute("alt", given.title);
      if (image.getAttribute("src") !== given.src) {
        image.onload = () => this.fit();
        image.setAttribute("src", given.src);
      }
      drawLines(side.querySelector("svg"), given.lines, given.width, given.height);
    });
    this.fit();
  }
}
