"""The dashboard's pages, one module per page family, each exposing ``router``."""
