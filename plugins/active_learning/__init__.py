"""Active-learning loop for object detection on Amazon SageMaker with Amazon A2I human review.

The top-level modules are the pure domain core (no Airflow, no boto3); the sub-packages
``hooks``, ``operators``, ``sensors``, ``triggers``, ``links`` and ``waiters`` are the Airflow layer.
"""
