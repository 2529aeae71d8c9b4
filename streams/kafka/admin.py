"""The topics SalesPulse creates, and the checks that a cluster can hold them.

The worker, the vtiger connector and ``salespulse topics plan`` share this one list, so a
topic has the same layout whether SalesPulse creates it or an operator does. On a real
cluster a topic with one replica loses its data with its broker (and managed Kafka refuses
it), and a changelog that is not compacted deletes the state it exists to keep. So
:func:`ensure_topics` first checks that the cluster has enough brokers, then creates what
is missing, then describes every topic. What only an operator can fix raises
:class:`TopicsRefused`, one message naming the topic and the setting, for the process to
stop on; what a retry may fix (a broker still starting) stays a ``KafkaError``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import KafkaError, NoError, TopicAlreadyExistsError, UnknownTopicOrPartitionError, for_code

from salespulse.schemas.topics import DEADLETTER, INPUT_TOPICS
from salespulse.streams.settings import Settings

log = logging.getLogger(__name__)

REPLICATION_SETTING = "SALESPULSE_REPLICATION_FACTOR"
#: The table the KPI state lives in; faust names its changelog ``<app id>-<table>-changelog``.
STATE_TABLE = "state"
#: Stands for the broker identity stamp in a changelog name printed without a broker.
EPOCH_PLACEHOLDER = "<epoch>"
PROBE_TOPIC = "salespulse-probe"
CONNECTOR_STATE_TOPIC = "salespulse-connector-state"
COMPACT = "compact"
DELETE = "delete"
#: The probe's records matter only to the start-up that wrote them.
PROBE_RETENTION_MS = 24 * 3600 * 1000


class TopicsRefused(Exception):
    """The cluster or a topic cannot hold SalesPulse's data as configured: stop, do not retry."""


@dataclass(frozen=True)
class Topic:
    """One topic as SalesPulse creates it: its layout, its configs and what it holds."""

    name: str
    partitions: int
    replication: int
    configs: Mapping[str, str]
    holds: str

    @property
    def compacted(self) -> bool:
        return self.configs.get("cleanup.policy") == COMPACT


def input_topics(settings: Settings) -> list[Topic]:
    """The ``crm.*`` topics events arrive on and the dead letters, all co-partitioned."""
    events = [
        Topic(name, settings.partitions, settings.replication, {"cleanup.policy": DELETE}, "events")
        for name in INPUT_TOPICS
    ]
    rejected = Topic(
        DEADLETTER, settings.partitions, settings.replication, {"cleanup.policy": DELETE}, "rejected bytes"
    )
    return [*events, rejected]


def state_table(epoch: str) -> str:
    """The state table's name, after the broker identity: a replaced broker gets a new changelog."""
    return f"{STATE_TABLE}-{epoch}" if epoch else STATE_TABLE


def changelog_topic(settings: Settings, epoch: str) -> Topic:
    """The KPI state's changelog; compacted, because the state is the newest record per key."""
    name = f"{settings.app_id}-{state_table(epoch)}-changelog"
    return Topic(name, settings.partitions, settings.replication, {"cleanup.policy": COMPACT}, "KPI state")


def leader_topic(settings: Settings) -> Topic:
    """faust's leader election topic, created here so that it gets the configured replicas."""
    name = f"{settings.app_id}-__assignor-__leader"
    return Topic(name, 1, settings.replication, {"cleanup.policy": DELETE}, "faust's leader election")


def probe_topic(settings: Settings) -> Topic:
    """Where the start-up writes its two-record batch to test the broker's ListOffsets."""
    configs = {"cleanup.policy": DELETE, "retention.ms": str(PROBE_RETENTION_MS)}
    return Topic(PROBE_TOPIC, 1, settings.replication, configs, "the end-offset probe")


def connector_state_topic(settings: Settings) -> Topic:
    """The connectors' memory; one partition, so every record of a CRM stays in order."""
    configs = {"cleanup.policy": COMPACT}
    return Topic(CONNECTOR_STATE_TOPIC, 1, settings.replication, configs, "connector cursors")


def plan(settings: Settings) -> list[Topic]:
    """Every topic SalesPulse creates, laid out as ``settings`` asks; needs no broker."""
    return [
        *input_topics(settings),
        changelog_topic(settings, EPOCH_PLACEHOLDER),
        leader_topic(settings),
        probe_topic(settings),
        connector_state_topic(settings),
    ]


def admin_client(settings: Settings) -> KafkaAdminClient:
    ms = int(settings.broker_timeout * 1000)
    return KafkaAdminClient(**settings.kafka_python_config, request_timeout_ms=ms, bootstrap_timeout_ms=ms)


def ensure_topics(settings: Settings, topics: Sequence[Topic]) -> None:
    """Check that the cluster can hold ``topics``, create the missing ones, check them all.

    Raises :class:`TopicsRefused` for what only an operator can fix; a ``KafkaError`` is
    for the caller's retry.
    """
    admin = admin_client(settings)
    try:
        # Before creating anything: a topic with more replicas than brokers is refused or,
        # by some brokers, silently kept with fewer.
        check_cluster(settings, admin.describe_cluster())
        _create_missing(admin, topics)
        # Every config of each topic, naming none (Tansu drops the connection when asked for
        # named keys); and "all", as kafka-python's default leaves out inherited values.
        resources = [ConfigResource(ConfigResourceType.TOPIC, t.name) for t in topics]
        configs = admin.describe_configs(resources, config_filter="all")
        check_topics(settings, topics, admin.describe_topics([t.name for t in topics]), configs)
    finally:
        admin.close()


def _create_missing(admin: KafkaAdminClient, topics: Sequence[Topic]) -> None:
    existing = set(admin.list_topics())
    missing = {
        t.name: {
            "num_partitions": t.partitions,
            "replication_factor": t.replication,
            "configs": dict(t.configs),
        }
        for t in topics
        if t.name not in existing
    }
    if not missing:
        return
    created = []
    for result in admin.create_topics(missing, raise_errors=False)["topics"]:
        error = for_code(result["error_code"])
        if error in (NoError, TopicAlreadyExistsError):  # another process may have been first
            created.append(result["name"])
        elif error.retriable:
            raise error(f"creating topic {result['name']}: {result['error_message']}")
        else:
            name, layout = result["name"], missing[result["name"]]
            raise TopicsRefused(
                f"the cluster refused to create topic {name} with {layout['num_partitions']} partitions"
                f" and {layout['replication_factor']} replicas ({error.__name__}: {result['error_message']});"
                f" check SALESPULSE_PARTITIONS and {REPLICATION_SETTING}, or create the topics yourself"
                " as `salespulse topics plan` lists them"
            )
    admin.wait_for_topics(created)


def _setting(settings: Settings) -> str:
    value = f"{REPLICATION_SETTING}={settings.replication}"
    return value if settings.replication_factor is not None else f"{value} (its default off loopback)"


def check_cluster(settings: Settings, cluster: Mapping[str, Any]) -> None:
    """Refuse a cluster with fewer brokers than each topic's replicas; ``cluster`` is
    what kafka-python's ``describe_cluster`` answers."""
    brokers = len(cluster.get("brokers") or ())
    if brokers < settings.replication:
        raise TopicsRefused(
            f"the cluster has {brokers} broker{'' if brokers == 1 else 's'}, fewer than the replicas"
            f" {_setting(settings)} asks of each topic: set {REPLICATION_SETTING} to at most {brokers}"
            " or add brokers"
        )


def check_topics(
    settings: Settings,
    topics: Sequence[Topic],
    described: Sequence[Mapping[str, Any]],
    configs: Mapping[str, Any],
) -> None:
    """Refuse topics with fewer replicas than the setting or than their
    ``min.insync.replicas`` (every write would fail), and a compacted topic whose
    ``cleanup.policy`` is not ``compact``; warn when the broker does not tell the policy.

    ``described`` and ``configs`` are kafka-python's ``describe_topics`` and
    ``describe_configs`` answers.
    """
    by_name = {str(d["name"]): d for d in described}
    problems = []
    for topic in topics:
        found = by_name.get(topic.name)
        error = UnknownTopicOrPartitionError if found is None else for_code(found["error_code"])
        if found is None or error is not NoError:
            if error.retriable:
                raise error(f"describing topic {topic.name}")
            problems.append(f"topic {topic.name} cannot be described ({error.__name__})")
            continue
        # Distinct brokers: a single broker may list itself once per replica asked for.
        replicas = min((len(set(p["replica_nodes"])) for p in found["partitions"]), default=0)
        if replicas < settings.replication:
            problems.append(
                f"topic {topic.name} has {replicas} replica{'' if replicas == 1 else 's'}, fewer than"
                f" {_setting(settings)}: add replicas to it (kafka-reassign-partitions.sh), or lower"
                f" {REPLICATION_SETTING}"
            )
        in_sync = configs.get("topic", {}).get(topic.name, {}).get("min.insync.replicas", {}).get("value")
        if in_sync is not None and int(in_sync) > replicas:
            problems.append(
                f"topic {topic.name} has min.insync.replicas={in_sync} but {replicas} replica"
                f"{'' if replicas == 1 else 's'}: every write to it would fail; raise"
                f" {REPLICATION_SETTING} and the topic's replicas, or lower its min.insync.replicas"
            )
        if topic.compacted:
            problems += _policy_problems(topic.name, configs)
    if problems:
        raise TopicsRefused("; ".join(problems))


def _policy_problems(name: str, configs: Mapping[str, Any]) -> list[str]:
    entry = configs.get("topic", {}).get(name, {}).get("cleanup.policy")
    if entry is None:
        log.warning(
            "cleanup.policy of topic %s could not be verified: the broker answered DescribeConfigs"
            " with no configs for it (the embedded Tansu broker does; on Kafka, grant DescribeConfigs"
            " on the topic); going on, trusting it is %s",
            name,
            COMPACT,
        )
        return []
    if entry.get("value") == COMPACT:
        return []
    return [
        f"topic {name} has cleanup.policy={entry.get('value')}, not {COMPACT}: it would delete the state"
        f" it keeps; set it with kafka-configs.sh --alter --entity-type topics --entity-name {name}"
        f" --add-config cleanup.policy={COMPACT}"
    ]


def broker_identity(settings: Settings, admin: KafkaAdminClient | None = None) -> dict[str, Any]:
    """Cluster id plus the ids of the input topics our state is derived from."""
    client = admin or admin_client(settings)
    try:
        cluster = client.describe_cluster()
        return {"cluster_id": cluster.get("cluster_id"), "topics": _topic_ids(client, INPUT_TOPICS)}
    finally:
        if admin is None:
            client.close()


def _topic_ids(client: KafkaAdminClient, names: Sequence[str]) -> dict[str, Any]:
    """The broker's id of each of ``names`` that exists: it changes when a topic is recreated."""
    existing = set(client.list_topics())
    return {t["name"]: t.get("topic_id") for t in client.describe_topics([n for n in names if n in existing])}


def topic_id(settings: Settings, topic: str) -> str | None:
    """The broker's id of ``topic``, or None if it has none yet (or the broker cannot say)."""
    try:
        admin = admin_client(settings)
    except (KafkaError, OSError):
        return None
    try:
        found = _topic_ids(admin, [topic]).get(topic)
        return None if found is None else str(found)
    except (KafkaError, OSError):
        return None
    finally:
        admin.close()
