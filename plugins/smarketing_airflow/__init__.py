"""Airflow-specific glue shared by the DAGs: assets, default arguments, connections to engines and sources.

Everything here is cheap to import (the DAG processor imports it on every parse); database drivers,
pandas and the business logic are imported inside the functions that tasks call.
"""
