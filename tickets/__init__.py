"""Hazard-rectification tickets (隐患整改, DESIGN §5): the loop, its sources, KPIs and exports."""
