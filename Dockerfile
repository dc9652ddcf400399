# Airflow 3.3 with the DAG package's requirements installed at build time (docker-compose.yaml builds
# it): containers start without a pip install. dags/, plugins/ and include/ are mounted by compose.
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /opt/airflow/requirements.txt
RUN pip install --no-cache-dir -r /opt/airflow/requirements.txt
# The SimpleAuthManager's login for this local image: admin / admin (the user is
# AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS; a real deployment uses its own auth manager).
RUN echo '{"admin": "admin"}' > /opt/airflow/simple_auth_manager_passwords.json.generated
# The folder of docker-compose's airflow-secrets volume (the JWT secret airflow-init generates): a new
# volume takes this folder's owner, the airflow user, who can then write it.
RUN mkdir -p /opt/airflow/secrets
