"""Topics a real cluster accepts: the replication setting, the start-up checks, ``topics plan``.

The decisions are tested against answers in the shapes kafka-python's admin client returns
them: a DescribeConfigs answer encoded as a broker sends it and decoded by kafka-python, and
the embedded broker's own answers. Worker and connector processes show the refusal as an
operator meets it: one message, a non-zero exit, no restart.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from typing import Any

import kafka
import orjson
import pytest
from click.testing import CliRunner
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.protocol.admin import DescribeConfigsResponse

from salespulse.schemas.topics import DEADLETTER, INPUT_TOPICS
from salespulse.streams.kafka.admin import (
    CONNECTOR_STATE_TOPIC,
    EPOCH_PLACEHOLDER,
    PROBE_TOPIC,
    TopicsRefused,
    broker_identity,
    changelog_topic,
    check_cluster,
    check_topics,
    ensure_topics,
    input_topics,
    leader_topic,
    plan,
)
from salespulse.streams.pipeline.app import create_app
from salespulse.streams.pipeline.consumer import BatchConsumer
from salespulse.streams.pipeline.worker import identity_epoch
from salespulse.streams.settings import Settings, SettingsError
from salespulse.streams.tools.broker import EmbeddedBroker, free_port
from salespulse.streams.tools.cli import EXIT_CONFIG, main
from tests.conftest import REPO

CLUSTER = "b1.kafka.internal:9093,b2.kafka.internal:9093,b3.kafka.internal:9093"
#: kafka-python's ConfigSourceType.DEFAULT_CONFIG: a value the topic inherits, not one set on it.
DEFAULT_CONFIG = 5


def test_replication_is_1_on_the_embedded_broker_3_on_any_other_and_the_setting_wins() -> None:
    assert Settings.from_env({}).replication == 1
    assert Settings.from_env({"SALESPULSE_BROKER": "localhost:19092"}).replication == 1
    assert Settings.from_env({"SALESPULSE_BROKER": CLUSTER}).replication == 3
    # Loopback with TLS is a tunnel to a real cluster, not the embedded broker.
    assert Settings.from_env({"SALESPULSE_SECURITY_PROTOCOL": "SSL"}).replication == 3
    assert (
        Settings.from_env({"SALESPULSE_REPLICATION_FACTOR": "2", "SALESPULSE_BROKER": CLUSTER}).replication
        == 2
    )
    assert Settings.from_env({"SALESPULSE_REPLICATION_FACTOR": "3"}).replication == 3
    # A --broker flag given after the environment was read still decides the default.
    assert Settings.from_env({}).with_overrides(brokers=CLUSTER).replication == 3
    for bad in ("0", "-1", "three"):
        with pytest.raises(SettingsError, match="SALESPULSE_REPLICATION_FACTOR"):
            Settings.from_env({"SALESPULSE_REPLICATION_FACTOR": bad})


def test_every_topic_the_project_creates_gets_the_configured_replication() -> None:
    settings = Settings.from_env({"SALESPULSE_BROKER": CLUSTER, "SALESPULSE_PARTITIONS": "12"})
    layout = {topic.name: topic for topic in plan(settings)}
    changelog = changelog_topic(settings, EPOCH_PLACEHOLDER).name
    expected = {*INPUT_TOPICS, DEADLETTER, changelog, leader_topic(settings).name, PROBE_TOPIC}
    assert set(layout) == expected | {CONNECTOR_STATE_TOPIC}
    assert {topic.replication for topic in layout.values()} == {3}
    assert {name for name, topic in layout.items() if topic.partitions == 12} == {
        *INPUT_TOPICS,
        DEADLETTER,
        changelog,
    }
    assert {name for name, topic in layout.items() if topic.compacted} == {changelog, CONNECTOR_STATE_TOPIC}


def test_the_app_names_its_changelog_as_the_topic_module_does_and_gives_faust_the_replication() -> None:
    settings = Settings.from_env({"SALESPULSE_BROKER": CLUSTER})
    app, _ = create_app(settings, epoch="0123456789ab")
    assert BatchConsumer.changelog_topic == changelog_topic(settings, "0123456789ab").name
    assert app.conf.topic_replication_factor == 3


# --------------------------------------------------------------------------- recorded answers


def described(name: str, replicas: list[int], partitions: int = 4) -> dict[str, Any]:
    """A topic as kafka-python's ``describe_topics`` returns it (shape recorded from a broker)."""
    return {
        "error_code": 0,
        "name": name,
        "topic_id": "01a24eab-9857-7032-b714-13b5cc2a0755",
        "is_internal": False,
        "authorized_operations": None,
        "partitions": [
            {
                "error_code": 0,
                "partition_index": p,
                "leader_id": replicas[0],
                "leader_epoch": 0,
                "replica_nodes": replicas,
                "isr_nodes": replicas,
                "offline_replicas": [],
            }
            for p in range(partitions)
        ],
    }


def described_configs(name: str, configs: dict[str, str]) -> dict[str, Any]:
    """kafka-python's ``describe_configs(..., config_filter="all")`` answer to a broker that
    sends ``configs``: the response is encoded as on the wire, decoded and processed by
    kafka-python's own code."""
    result = DescribeConfigsResponse.DescribeConfigsResult
    entry = result.DescribeConfigsResourceResult
    response = DescribeConfigsResponse(
        version=4,
        throttle_time_ms=0,
        results=[
            result(
                error_code=0,
                error_message=None,
                resource_type=int(ConfigResourceType.TOPIC),
                resource_name=name,
                configs=[
                    entry(
                        name=key,
                        value=value,
                        read_only=False,
                        config_source=DEFAULT_CONFIG,
                        is_sensitive=False,
                        synonyms=[],
                        config_type=0,
                        documentation=None,
                    )
                    for key, value in configs.items()
                ],
            )
        ],
    )
    wire = bytes(response.encode())
    answer: dict[str, Any] = KafkaAdminClient._describe_configs_process_responses(
        [DescribeConfigsResponse[4].decode(wire)], "all"
    )
    return answer


CLUSTER_SETTINGS = Settings.from_env({"SALESPULSE_BROKER": CLUSTER})
CHANGELOG = changelog_topic(CLUSTER_SETTINGS, "0123456789ab")
KAFKA_DEFAULTS = {"retention.ms": "604800000", "min.insync.replicas": "2", "segment.bytes": "1073741824"}


def test_a_changelog_the_broker_describes_as_cleanup_policy_delete_is_refused() -> None:
    configs = described_configs(CHANGELOG.name, {"cleanup.policy": "delete", **KAFKA_DEFAULTS})

    with pytest.raises(TopicsRefused) as refused:
        check_topics(CLUSTER_SETTINGS, [CHANGELOG], [described(CHANGELOG.name, [1, 2, 3])], configs)

    message = str(refused.value)
    assert CHANGELOG.name in message and "cleanup.policy=delete" in message
    assert "cleanup.policy=compact" in message  # and how to set it


@pytest.mark.parametrize("policy", ["compact,delete", "delete,compact"])
def test_a_changelog_compacted_and_also_deleted_by_age_is_refused(policy: str) -> None:
    configs = described_configs(CHANGELOG.name, {"cleanup.policy": policy})
    with pytest.raises(TopicsRefused, match=CHANGELOG.name):
        check_topics(CLUSTER_SETTINGS, [CHANGELOG], [described(CHANGELOG.name, [1, 2, 3])], configs)


def test_a_compacted_changelog_with_enough_replicas_passes_silently(caplog: Any) -> None:
    configs = described_configs(CHANGELOG.name, {"cleanup.policy": "compact", **KAFKA_DEFAULTS})
    with caplog.at_level(logging.WARNING):
        check_topics(CLUSTER_SETTINGS, [CHANGELOG], [described(CHANGELOG.name, [3, 1, 2])], configs)
    assert caplog.records == []


def test_a_broker_that_answers_describe_configs_with_no_configs_gets_a_warning_and_the_worker_goes_on(
    caplog: Any,
) -> None:
    configs = described_configs(CHANGELOG.name, {})
    assert configs == {"topic": {CHANGELOG.name: {}}}

    with caplog.at_level(logging.WARNING):
        check_topics(CLUSTER_SETTINGS, [CHANGELOG], [described(CHANGELOG.name, [1, 2, 3])], configs)

    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING
    assert "cleanup.policy" in warning.getMessage() and CHANGELOG.name in warning.getMessage()
    assert "could not be verified" in warning.getMessage()


def test_a_topic_with_fewer_replicas_than_the_setting_is_refused_naming_topic_and_setting() -> None:
    topics = [*input_topics(CLUSTER_SETTINGS), CHANGELOG]
    answers = [described(t.name, [1, 2, 3]) for t in topics]
    answers[1] = described("crm.deals", [2])
    configs = described_configs(CHANGELOG.name, {"cleanup.policy": "compact"})

    with pytest.raises(TopicsRefused) as refused:
        check_topics(CLUSTER_SETTINGS, topics, answers, configs)

    message = str(refused.value)
    assert "crm.deals has 1 replica" in message and "SALESPULSE_REPLICATION_FACTOR=3" in message
    assert "crm.leads" not in message


def test_a_topic_with_min_insync_replicas_above_its_replicas_is_refused_as_writes_would_fail() -> None:
    one = Settings.from_env({"SALESPULSE_BROKER": CLUSTER, "SALESPULSE_REPLICATION_FACTOR": "1"})
    changelog = changelog_topic(one, "0123456789ab")
    configs = described_configs(changelog.name, {"cleanup.policy": "compact", "min.insync.replicas": "2"})

    with pytest.raises(TopicsRefused) as refused:
        check_topics(one, [changelog], [described(changelog.name, [2])], configs)

    assert f"{changelog.name} has min.insync.replicas=2 but 1 replica" in str(refused.value)
    assert "SALESPULSE_REPLICATION_FACTOR" in str(refused.value)
    check_topics(one, [changelog], [described(changelog.name, [2, 3])], configs)


def test_a_broker_listing_itself_once_per_replica_asked_for_counts_as_one_replica() -> None:
    # The embedded broker accepts replication 3 and lists its one node three times.
    leader = leader_topic(CLUSTER_SETTINGS)
    with pytest.raises(TopicsRefused, match=f"{leader.name} has 1 replica"):
        check_topics(CLUSTER_SETTINGS, [leader], [described(leader.name, [111] * 3, partitions=1)], {})


def test_a_cluster_with_fewer_brokers_than_the_setting_is_refused_before_anything_is_created() -> None:
    two = {"cluster_id": "c", "controller_id": 1, "brokers": [{"broker_id": 1}, {"broker_id": 2}]}
    with pytest.raises(TopicsRefused, match=r"2 brokers.*SALESPULSE_REPLICATION_FACTOR=3.*at most 2"):
        check_cluster(CLUSTER_SETTINGS, two)
    check_cluster(
        Settings.from_env({"SALESPULSE_BROKER": CLUSTER, "SALESPULSE_REPLICATION_FACTOR": "2"}), two
    )


# --------------------------------------------------------------------------- the embedded broker


def test_describe_cluster_and_describe_configs_work_against_the_embedded_broker(settings: Settings) -> None:
    assert kafka.__version__.startswith("3.")  # the API below is kafka-python 3's
    epoch = "0123456789ab"
    ensure_topics(
        settings, [*input_topics(settings), changelog_topic(settings, epoch), leader_topic(settings)]
    )
    admin = KafkaAdminClient(**settings.kafka_python_config)
    try:
        cluster = admin.describe_cluster()
        assert len(cluster["brokers"]) == 1 and cluster["cluster_id"]
        changelog = changelog_topic(settings, epoch).name
        admin.create_topics({"made-without-configs": {"num_partitions": 1, "replication_factor": 1}})
        answer = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in (changelog, "made-without-configs")],
            config_filter="all",
        )
        (described_topic,) = admin.describe_topics([changelog])
    finally:
        admin.close()
    # Tansu answers with the configs a topic was created with, and none for the others.
    assert answer["topic"][changelog]["cleanup.policy"]["value"] == "compact"
    assert answer["topic"]["made-without-configs"] == {}
    assert [len(p["replica_nodes"]) for p in described_topic["partitions"]] == [1] * 4


def test_a_changelog_created_with_cleanup_policy_delete_on_the_broker_is_refused(settings: Settings) -> None:
    changelog = changelog_topic(settings, "0123456789ab")
    admin = KafkaAdminClient(**settings.kafka_python_config)
    try:
        admin.create_topics(
            {
                changelog.name: {
                    "num_partitions": 4,
                    "replication_factor": 1,
                    "configs": {"cleanup.policy": "delete"},
                }
            }
        )
    finally:
        admin.close()
    with pytest.raises(TopicsRefused, match=f"{changelog.name} has cleanup.policy=delete"):
        ensure_topics(settings, [changelog])


def test_a_changelog_the_broker_reports_no_configs_for_is_warned_about_and_used(
    settings: Settings, caplog: Any
) -> None:
    changelog = changelog_topic(settings, "0123456789ab")
    admin = KafkaAdminClient(**settings.kafka_python_config)
    try:
        admin.create_topics({changelog.name: {"num_partitions": 4, "replication_factor": 1}})
    finally:
        admin.close()
    with caplog.at_level(logging.WARNING, logger="salespulse"):
        ensure_topics(settings, [changelog])
    (warning,) = [r.getMessage() for r in caplog.records if "could not be verified" in r.getMessage()]
    assert f"cleanup.policy of topic {changelog.name}" in warning


def _topics_on(broker: EmbeddedBroker) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=[broker.bootstrap])
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_a_worker_asked_for_3_replicas_on_the_single_embedded_broker_stops_at_once_with_one_message(
    broker: EmbeddedBroker, spawn_worker: Any
) -> None:
    started = time.monotonic()
    worker = spawn_worker("three", SALESPULSE_REPLICATION_FACTOR="3")
    code = worker.process.wait(timeout=60)
    took = time.monotonic() - started

    assert code == EXIT_CONFIG
    assert took < 20, f"it took {took:.1f}s to stop"
    log = worker.log_path.read_text()
    refusals = [line for line in log.splitlines() if "not starting" in line]
    assert len(refusals) == 1, log
    assert "1 broker" in refusals[0] and "SALESPULSE_REPLICATION_FACTOR=3" in refusals[0]
    assert "Traceback" not in log
    with pytest.raises(ProcessLookupError):  # nothing of it runs on, nothing restarted it
        os.killpg(worker.process.pid, 0)
    time.sleep(1.0)
    assert worker.log_path.read_text() == log
    # Refused before creating anything: no topic was made with replicas the cluster lacks.
    assert not _topics_on(broker) & {*INPUT_TOPICS, DEADLETTER}


def test_a_worker_asked_for_1_replica_runs_on_topics_laid_out_as_the_plan_says(
    broker: EmbeddedBroker, settings: Settings, spawn_worker: Any
) -> None:
    worker = spawn_worker("one", SALESPULSE_REPLICATION_FACTOR="1", SALESPULSE_TEST_LOGLEVEL="info")
    worker.wait_ready()

    epoch = identity_epoch(broker_identity(settings))
    expected = {
        topic.name.replace(EPOCH_PLACEHOLDER, epoch)
        for topic in plan(settings)
        if topic.name != CONNECTOR_STATE_TOPIC
    }
    assert _topics_on(broker) == expected
    log = worker.log_path.read_text()
    assert "not starting" not in log and "could not be verified" not in log


def test_the_connector_refuses_a_state_topic_that_is_not_compacted_and_exits_once(
    broker: EmbeddedBroker,
) -> None:
    admin = KafkaAdminClient(bootstrap_servers=[broker.bootstrap])
    try:
        admin.create_topics(
            {
                CONNECTOR_STATE_TOPIC: {
                    "num_partitions": 1,
                    "replication_factor": 1,
                    "configs": {"cleanup.policy": "delete"},
                }
            }
        )
    finally:
        admin.close()
    env = {
        **os.environ,
        "SALESPULSE_BROKER": broker.bootstrap,
        "SALESPULSE_VTIGER_URL": "http://127.0.0.1:9",
        "SALESPULSE_VTIGER_USER": "admin",
        "SALESPULSE_VTIGER_ACCESS_KEY": "key",
        "SALESPULSE_CONNECTOR_PORT": str(free_port()),
    }
    # Not --once: a connector that retries every other failure stops on this one.
    run = subprocess.run(
        [sys.executable, "-m", "salespulse.streams", "connect", "vtiger"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == EXIT_CONFIG
    refusals = [line for line in run.stderr.splitlines() if "not starting" in line]
    assert len(refusals) == 1, run.stderr
    assert f"{CONNECTOR_STATE_TOPIC} has cleanup.policy=delete" in refusals[0]


# --------------------------------------------------------------------------- topics plan


def plan_output(*args: str, **env: str) -> str:
    # No broker listens on this port: the plan must not need one.
    base = {"SALESPULSE_BROKER": f"127.0.0.1:{free_port()}", "SALESPULSE_PARTITIONS": "4"}
    result = CliRunner().invoke(main, ["topics", "plan", *args], env={**base, **env}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_topics_plan_prints_every_topic_with_partitions_replication_cleanup_policy_and_retention() -> None:
    started = time.monotonic()
    out = plan_output(SALESPULSE_BROKER=CLUSTER, SALESPULSE_PARTITIONS="12")
    assert time.monotonic() - started < 5
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
    header = out.splitlines()[0].split()
    assert header == ["topic", "partitions", "replication", "cleanup.policy", "retention", "holds"]
    for name in (*INPUT_TOPICS, DEADLETTER):
        assert rows[name][1:5] == ["12", "3", "delete", "broker"]
    changelog = f"salespulse-state-{EPOCH_PLACEHOLDER}-changelog"
    assert rows[changelog][1:5] == ["12", "3", "compact", "compacted"]
    assert rows["salespulse-__assignor-__leader"][1:4] == ["1", "3", "delete"]
    assert rows[PROBE_TOPIC][1:6] == ["1", "3", "delete", "86400000", "ms"]
    assert rows[CONNECTOR_STATE_TOPIC][1:5] == ["1", "3", "compact", "compacted"]
    assert f"{EPOCH_PLACEHOLDER}:" in out  # what the placeholder stands for


def test_topics_plan_follows_the_setting_the_flags_and_the_embedded_default() -> None:
    def replication(out: str) -> set[str]:
        return {line.split()[2] for line in out.splitlines()[1:] if line.startswith(("crm.", "salespulse-"))}

    assert replication(plan_output()) == {"1"}
    assert replication(plan_output(SALESPULSE_REPLICATION_FACTOR="2")) == {"2"}
    assert replication(plan_output("--broker", CLUSTER)) == {"3"}
    assert replication(plan_output("--replication-factor", "5", "--broker", CLUSTER)) == {"5"}


def test_topics_plan_json_is_the_plan_the_worker_and_connector_create_from() -> None:
    rows = orjson.loads(plan_output("--json", SALESPULSE_BROKER=CLUSTER))
    settings = Settings.from_env({"SALESPULSE_BROKER": CLUSTER, "SALESPULSE_PARTITIONS": "4"})
    assert rows == [
        {
            "topic": t.name,
            "partitions": t.partitions,
            "replication": t.replication,
            "configs": dict(t.configs),
            "holds": t.holds,
        }
        for t in plan(settings)
    ]


def test_topics_plan_help_says_what_it_is_for_and_that_it_needs_no_broker() -> None:
    result = CliRunner().invoke(main, ["topics", "plan", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "operators create the topics" in text and "no broker is contacted" in text
    assert "--replication-factor" in text and "SALESPULSE_REPLICATION_FACTOR" in text
    assert "plan" in CliRunner().invoke(main, ["topics", "--help"]).output


def test_the_plan_shown_in_the_operations_guide_is_what_the_command_prints() -> None:
    guide = (REPO / "docs" / "operations.md").read_text()
    command = "$ SALESPULSE_BROKER=b1:9093 SALESPULSE_PARTITIONS=12 salespulse topics plan\n"
    shown = guide[guide.index(command) + len(command) :].split("```", 1)[0]
    printed = plan_output(SALESPULSE_BROKER="b1:9093", SALESPULSE_PARTITIONS="12")
    assert printed.startswith(shown)
