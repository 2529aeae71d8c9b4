"""The eight KPIs, in the order a sales manager reads them, the detractor follow-up and the
forecast against quota."""

from __future__ import annotations

from salespulse.agents import (
    acquisition,
    detractors,
    engagement,
    enps,
    expansion,
    forecast,
    leads,
    nps,
    pricing,
    sales,
)
from salespulse.agents.base import Kpi

KPIS: tuple[Kpi, ...] = (
    leads.KPI,
    acquisition.KPI,
    sales.KPI,
    pricing.KPI,
    engagement.KPI,
    enps.KPI,
    expansion.KPI,
    nps.KPI,
    detractors.KPI,
    forecast.KPI,
)
