"""Data readers shared by the examples (each module imports its optional deps lazily)."""
