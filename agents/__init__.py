"""The KPI logic: one module per KPI, plus the shared rolling-window state they build on."""
