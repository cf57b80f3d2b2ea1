"""leadscore: open, explainable, fast lead scoring."""
__version__ = "0.1.0"
