"""skinapp: a dermoscopy case-review workstation. The core package never imports Streamlit."""

__version__ = "0.4.0"
