"""What people read and download: escaped text, overlays, the per-case HTML report, CSV exports, the model card."""
