// Streamlit's component protocol by hand (no build step): announce readiness, receive "render" with the
// Python arguments, send a value back, and size the frame to what is drawn.
const StreamlitFrame = {
  send(type, data) {
    window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, data), "*");
  },
  ready() { this.send("streamlit:componentReady", { apiVersion: 1 }); },
  height(pixels) { this.send("streamlit:setFrameHeight", { height: Math.ceil(pixels) }); },
  value(value) { this.send("streamlit:setComponentValue", { value: value, dataType: "json" }); },
  onRender(callback) {
    window.addEventListener("message", (event) => {
      if (event.data && event.data.type === "streamlit:render") callback(event.data.args || {});
    });
  },
};

// Lines given in the image's own pixels, drawn in an SVG whose viewBox is that image.
function drawLines(svg, lines, width, height) {
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.querySelectorAll(".given").forEach((node) => node.remove());
  for (const line of lines || []) {
    const shape = document.createElementNS("http://www.w3.org/2000/svg", line.closed ? "polygon" : "polyline");
    shape.setAttribute("points", line.points.map((p) => `${p[0]},${p[1]}`).join(" "));
    shape.setAttribute("class", "given");
    shape.setAttribute("fill", "none");
    shape.setAttribute("stroke", line.colour);
    shape.setAttribute("stroke-width", String(Math.max(width, height) / 300));
    shape.setAttribute("vector-effect", "non-scaling-stroke");
    if (line.dash) shape.setAttribute("stroke-dasharray", "6 4");
    svg.appendChild(shape);
  }
}
