"""What people read and download: escaped text, overlays, the per-case HTML and PDF reports, the model card."""
