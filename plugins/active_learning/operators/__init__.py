"""Airflow layer of the active-learning package."""
