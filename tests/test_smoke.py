"""Each component is real: the API server stores objects, Postgres keeps rows, Redis keeps keys."""

from __future__ import annotations

import subprocess
import uuid

import redis
import sqlalchemy as sa
from kubernetes import client, config

from tests.support.services import ControlPlane


def test_kubectl_and_python_client_share_a_real_apiserver(control_plane: ControlPlane) -> None:
    ns = f"smoke-{uuid.uuid4().hex[:8]}"
    env = control_plane.env()
    subprocess.run(["kubectl", "create", "namespace", ns], env=env, check=True, capture_output=True)
    subprocess.run(
        ["kubectl", "-n", ns, "create", "configmap", "hello", "--from-literal=greeting=sundial"],
        env=env,
        check=True,
        capture_output=True,
    )
    api = client.CoreV1Api(config.new_client_from_config(str(control_plane.kubeconfig)))
    assert api.read_namespace(ns).metadata.name == ns
    assert api.read_namespaced_config_map("hello", ns).data == {"greeting": "sundial"}
    version = subprocess.run(["kubectl", "version", "-o", "json"], env=env, check=True, capture_output=True)
    assert b'"gitVersion": "v1.33' in version.stdout


def test_postgres_round_trip(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE smoke (id int primary key, v text)"))
        conn.execute(sa.text("INSERT INTO smoke VALUES (1, 'sundial')"))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT v FROM smoke WHERE id = 1")).scalar_one() == "sundial"
        assert "PostgreSQL" in conn.execute(sa.text("SELECT version()")).scalar_one()
    engine.dispose()


def test_redis_round_trip(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.set("sundial:smoke", "tick")
    assert r.get("sundial:smoke") == b"tick"
    assert r.info("server")["redis_version"]
    r.close()


def test_helm_is_built(control_plane: ControlPlane) -> None:
    out = subprocess.run(
        [str(control_plane.helm), "version", "--short"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("v3.")
