"""Configuration (TOML + flags) and the ``ugss-node`` command line: values, errors, status."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ugss.dicom_node.cli import app
from ugss.dicom_node.config import Destination, NodeConfig, Peer, load_config
from ugss.dicom_node.db import NodeDB
from ugss.dicom_node.dimse import StoreRefusal
from ugss.dicom_node.sender import backoff_s, is_delivered
from ugss.dicom_node.spool import AlreadyStored, Spool, checked_uid, is_valid_uid
from ugss.errors import ConfigError, InputError

runner = CliRunner()


def test_defaults_listen_on_loopback_and_write_to_a_folder():
    cfg = NodeConfig()
    assert cfg.bind == "127.0.0.1" and cfg.port == 11112 and cfg.ae_title == "UGSS"
    assert cfg.destinations == () and cfg.results_dir == cfg.spool / "results"
    assert cfg.model is None  # the bundled model


def test_toml_then_flags(tmp_path):
    f = tmp_path / "node.toml"
    f.write_text(
        'ae_title = "NODE1"\nport = 4000\npeers = ["ORTHANC@127.0.0.1", "ANY@*"]\n'
        'destinations = ["pacs=ORTHANC@10.0.0.5:4242"]\nquiet_period_s = 3\n'
    )
    cfg = load_config(f, port=5000, quiet_period_s=None)
    assert cfg.ae_title == "NODE1" and cfg.port == 5000 and cfg.quiet_period_s == 3.0
    assert cfg.peers == (Peer("ORTHANC", "127.0.0.1"), Peer("ANY", "*"))
    assert cfg.destinations == (Destination("pacs", "ORTHANC", "10.0.0.5", 4242),)
    assert NodeConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 70000", "port must be 0..65535"),
        ('ae_title = "WAY-TOO-LONG-AE-TITLE"', "1-16 printable"),
        ('peers = ["ORTHANC"]', "expected AE@host"),
        ('peers = ["ORTHANC@pacs.example"]', "not an IP address"),
        ('destinations = ["ORTHANC@1.2.3.4"]', "name=AE@host:port"),
        ("quiet_period_s = 0", "quiet_period_s must be > 0"),
        ('tls_cert = "a.pem"', "both tls_cert and tls_key"),
        ("colour = 1", "unknown configuration keys: colour"),
        ("port = 1.5", "whole number"),
        ("port = [", "not valid TOML"),
        ('destinations = ["web=https://u:pw@pacs.example/dicom-web"]', "no credentials in the URL"),
        ('web_auth = "digest"', "none, basic or bearer"),
        ('web_auth = "bearer"', "needs web_secret_file"),
        ('web_auth = "basic"\nweb_secret_file = "s"', "needs web_user"),
    ],
)
def test_bad_configuration_is_one_clear_error(tmp_path, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_config(f)


def test_cli_print_config_and_bad_flag_exit_code(tmp_path):
    out = runner.invoke(app, ["--print-config", "--port", "4100", "--peer", "A@127.0.0.1",
                              "--spool", str(tmp_path)])  # fmt: skip
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["port"] == 4100 and data["peers"] == ["A@127.0.0.1"]
    from ugss.dicom_node import cli

    with pytest.raises(SystemExit) as exc:
        import sys

        argv = sys.argv
        sys.argv = ["ugss-node", "--print-config", "--bind", "localhost"]
        try:
            cli.main()
        finally:
            sys.argv = argv
    assert exc.value.code == 2


def test_status_lists_series_jobs_outbox(tmp_path):
    db = NodeDB(tmp_path / "node.sqlite")
    db.record_instance(series_uid="1.2.3", study_uid="1.2", sop_uid="1.2.3.1", path="p",
                       size=10, calling_ae="X", now=0.0)  # fmt: skip
    (job,) = db.queue_quiet_series(1.0, now=5.0)
    job = db.next_job()
    db.finish_job(job, ok=True, result={"volume_ml": 4.25},
                  outbox=[("pacs", "f.dcm", "1.2.840.10008.5.1.4.1.1.66.4", "9.9")])  # fmt: skip
    db.close()
    out = runner.invoke(app, ["status", "--spool", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "series: done 1" in out.output and "jobs: done 1" in out.output
    assert "outbox: pending 1" in out.output and "4.25" in out.output
    as_json = runner.invoke(app, ["status", "--spool", str(tmp_path), "--json"])
    assert json.loads(as_json.output)["jobs"][0]["result"]["volume_ml"] == 4.25
    missing = runner.invoke(app, ["status", "--spool", str(tmp_path / "nothing")])
    assert isinstance(missing.exception, InputError) and missing.exception.exit_code == 2


def test_database_records_migrations_and_versions(tmp_path):
    db = NodeDB(tmp_path / "n.sqlite")
    names = [r[0] for r in db._query("SELECT name FROM schema_migrations")]
    assert names == ["0001_initial", "0002_peers_and_budgets", "0003_studies"]
    kw = {"study_uid": "1.2", "size": 1, "calling_ae": "A"}
    assert db.record_instance(series_uid="1.5", sop_uid="1.5.1", path="a", now=0, **kw).new
    assert not db.record_instance(series_uid="1.5", sop_uid="1.5.1", path="a", now=1, **kw).new
    assert db.queue_quiet_series(10, now=5) == []  # not quiet yet
    (job,) = db.queue_quiet_series(10, now=11)
    assert job.version == 1
    # an instance while the job is only queued: the job waits for the rest of the series
    db.record_instance(series_uid="1.5", sop_uid="1.5.2", path="b", now=12, **kw)
    assert db.next_job() is None
    (job,) = db.queue_quiet_series(10, now=30)
    assert (job.version, job.n_instances) == (1, 2)
    running = db.next_job()
    rec = db.record_instance(series_uid="1.5", sop_uid="1.5.3", path="c", now=31, **kw)
    assert rec.reopened  # while processing: the result will be followed by another version
    db.finish_job(running, ok=True)
    assert db.rows("series")[0]["state"] == "receiving"
    (job2,) = db.queue_quiet_series(10, now=50)
    assert job2.version == 2
    assert db.next_job().id == job2.id
    assert db.recover() == {"requeued": 1, "failed": 0}
    db.close()


def test_uid_rules_and_spool_writes(tmp_path):
    assert is_valid_uid("1.2.840.10008.1.2") and is_valid_uid("0.1")
    for bad in ("../../x", "1.02", "1..2", "", "1." + "1" * 70, "1.2.a", "/etc/passwd"):
        assert not is_valid_uid(bad)
    with pytest.raises(StoreRefusal) as exc:
        checked_uid("../../x", "SeriesInstanceUID")
    assert exc.value.status == 0xA900
    spool = Spool(tmp_path / "spool", limit_bytes=100)
    path, added = spool.store("1.2", "1.2.3", b"x" * 60)
    assert path.read_bytes() == b"x" * 60 and added == 60
    with pytest.raises(AlreadyStored):  # never replaced: the receiver compares the copies
        spool.store("1.2", "1.2.3", b"y" * 50)
    assert path.read_bytes() == b"x" * 60 and spool.used_bytes == 60
    assert spool.holds(path, b"x" * 10) and not spool.holds(path, b"y" * 10)
    with pytest.raises(StoreRefusal) as exc:
        spool.store("1.2", "1.2.4", b"z" * 60)
    assert exc.value.status == 0xA700
    assert list(spool.incoming.iterdir()) == []
    (spool.incoming / "left.part").write_bytes(b"partial")
    assert Spool(tmp_path / "spool", limit_bytes=100).clear_incoming() == 0  # cleared at start
    assert list(spool.incoming.iterdir()) == []


def test_delivery_statuses_and_backoff():
    assert is_delivered(0x0000) and is_delivered(0xB000) and not is_delivered(0xA700)
    assert [backoff_s(n, 5, 60) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 60]


def test_deploy_examples_agree():
    """deploy/orthanc: the node's TOML and Orthanc's modality entry describe each other."""
    root = __import__("pathlib").Path(__file__).parents[2] / "deploy" / "orthanc"
    cfg = load_config(root / "ugss-node.toml")
    orthanc = json.loads((root / "orthanc.json").read_text())
    aet, host, port = orthanc["DicomModalities"]["ugss"]
    assert (aet, host, port) == (cfg.ae_title, cfg.bind, cfg.port)
    assert cfg.peers == (Peer(orthanc["DicomAet"], "127.0.0.1"),)
    (dest,) = cfg.destinations
    assert (dest.ae_title, dest.port) == (orthanc["DicomAet"], orthanc["DicomPort"])
    assert orthanc["DicomAlwaysAllowStore"] is False and orthanc["Plugins"] == []


def test_engine_provider_and_triton_url_reach_the_engine(tmp_path, monkeypatch):
    """Several nodes can share one Triton server: the node hands provider/URL to the runtime."""
    import ugss.dicom_node.node as node_mod

    seen = {}

    def fake_open_engine(model, *, provider, triton_url, threads):
        seen.update(model=model, provider=provider, triton_url=triton_url, threads=threads)
        raise InputError("stop here")

    monkeypatch.setattr(node_mod, "open_engine", fake_open_engine)
    cfg = load_config(None, provider="auto", triton_url="127.0.0.1:8001", model="ugss", threads=2)
    with pytest.raises(InputError, match="stop here"):
        node_mod.load_engine(cfg)
    assert seen == {
        "model": cfg.model, "provider": "auto", "triton_url": "127.0.0.1:8001", "threads": 2
    }  # fmt: skip
    with pytest.raises(InputError):  # threads 0 = all cores: onnxruntime's own choice
        node_mod.load_engine(load_config(None))
    assert seen["threads"] is None
    with pytest.raises(ConfigError, match="threads must be >= 0"):
        load_config(None, threads=-1)
    with pytest.raises(ConfigError, match="provider must be one of"):
        load_config(None, provider="gpu")


def test_spool_files_are_private(tmp_path):
    spool = Spool(tmp_path / "spool", 10 * 2**20, 0)
    path, _ = spool.store("1.2", "1.2.3", b"x" * 10)
    assert path.stat().st_mode & 0o777 == 0o600
    for d in (spool.root, spool.incoming, spool.series_root, path.parent):
        assert d.stat().st_mode & 0o077 == 0, d


def test_destinations_imply_a_calling_ae_allow_list(tmp_path):
    dests = ["pacs=ORTHANC@127.0.0.1:4242", "copy=ORTHANC@127.0.0.1:4243"]
    assert load_config(None, destinations=dests).peers == (Peer("ORTHANC", "127.0.0.1"),)
    explicit = load_config(None, destinations=dests, peers=["CT1@10.0.0.5"])
    assert explicit.peers == (Peer("CT1", "10.0.0.5"),)
    assert load_config(None, destinations=dests, allow_any_peer=True).peers == ()
    assert load_config(None).peers == ()  # nothing to derive from: results go to a folder
    out = CliRunner().invoke(app, ["--destination", dests[0], "--print-config"])
    assert out.exit_code == 0 and json.loads(out.output)["peers"] == ["ORTHANC@127.0.0.1"]


def test_a_dicomweb_destination_is_a_url_and_adds_no_peer(tmp_path):
    f = tmp_path / "node.toml"
    f.write_text(
        'destinations = ["cloud=https://pacs.example/dicom-web/"]\n'
        'web_auth = "bearer"\nweb_secret_file = "token"\nweb_timeout_s = 5\n'
    )
    cfg = load_config(f)
    (dest,) = cfg.destinations
    assert dest.is_web and dest.url == "https://pacs.example/dicom-web"
    assert str(dest) == "cloud=https://pacs.example/dicom-web"
    assert cfg.web_timeout_s == 5.0 and cfg.web_secret_file.name == "token"
    assert cfg.peers == ()  # no AE@host to derive an allow-list from
    assert not Destination.parse("pacs=PACS@10.0.0.2:104").is_web
