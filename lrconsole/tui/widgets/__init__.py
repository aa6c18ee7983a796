"""The run screen's widgets."""
