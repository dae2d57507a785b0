"""databricks.yml with resources/ checked against the Databricks CLI's own bundle JSON schema, and
the rules a deployable bundle must keep (issue 16, item 3) asserted directly.

The schema comes from `databricks bundle schema` of a pinned CLI built from its Go module
(tests/support/databricks_cli.py; the first build takes minutes and is cached). Without Go the
schema tests are skipped; the rule tests below them need only YAML.
`databricks bundle validate` needs a workspace (it asks for the current user and the deploy
folder), so it runs against a stub of those few calls on 127.0.0.1: the CLI's own checks of
targets, variables, run_as, production mode and local paths, without network. What only a real
workspace can tell (the volume, the secret, the service principal exist; the wheel installs on the
runtime; the jobs run) is not tested here.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.support.databricks_cli import (
    GoMissing,
    bundle_schema,
    bundle_validate,
    ensure_cli,
    stub_workspace,
)
from webscale_rl.cli import build_parser
from webscale_rl.config import load_config

ROOT = Path(__file__).resolve().parents[2]
BUNDLE_REFERENCE = re.compile(r"\$\{([^}]+)\}")
JOB_PARAMETER = re.compile(r"\{\{\s*job\.parameters\.([A-Za-z0-9_.-]+)\s*\}\}")
SECRET_SET = "llm.api_key_secret="
WHOLE_RUN_JOB, STAGE_JOB = "webscale_rl_pipeline", "webscale_rl_stages"


# --- the bundle as the CLI sees it -----------------------------------------------------------------


def merge(base: dict, extra: dict, where: str = "") -> dict:
    """Merge an included file into the root config the way the CLI does: mappings merge key by
    key, sequences are appended; the same resource defined twice is an error."""
    for key, value in extra.items():
        path = f"{where}.{key}" if where else key
        if key not in base:
            base[key] = value
        elif isinstance(base[key], dict) and isinstance(value, dict):
            if re.fullmatch(r"resources\.[a-z_]+", where):
                raise AssertionError(f"{path} is defined in more than one file")
            merge(base[key], value, path)
        elif isinstance(base[key], list) and isinstance(value, list):
            base[key] = base[key] + value
        else:
            base[key] = value
    return base


def included_files(root: Path | None = None) -> list[Path]:
    root = root or ROOT
    config = yaml.safe_load((root / "databricks.yml").read_text())
    files = [path for pattern in config.get("include", []) for path in sorted(root.glob(pattern))]
    assert files, "databricks.yml includes no file"
    return files


def load_bundle(root: Path | None = None) -> dict:
    """databricks.yml with every file its `include:` globs match merged in."""
    root = root or ROOT
    config = yaml.safe_load((root / "databricks.yml").read_text())
    for path in included_files(root):
        merge(config, yaml.safe_load(path.read_text()))
    return config


def jobs_of(bundle: dict) -> dict:
    return bundle["resources"]["jobs"]


def wheel_tasks(bundle: dict):
    for job_name, job in jobs_of(bundle).items():
        for task in job["tasks"]:
            if "python_wheel_task" in task:
                yield job_name, task


def schema_errors(schema: dict, bundle: dict) -> list[str]:
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator = validator_class(schema)
    errors = sorted(validator.iter_errors(bundle), key=lambda e: list(e.absolute_path))
    found = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {jsonschema.exceptions.best_match([e]).message}" for e in errors]
    # The schema's root allows any key (additionalProperties: {}); the CLI does not know them.
    found += [f"{key}: not a top-level key of a bundle" for key in sorted(set(bundle) - set(schema["properties"]))]
    return found


# --- against the CLI's schema ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def cli_binary() -> Path:
    try:
        return ensure_cli()
    except GoMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def cli_schema(cli_binary) -> dict:
    return bundle_schema(cli_binary)


def test_the_schema_is_the_bundle_schema(cli_schema):
    # A wrong command or an empty print would make every check below vacuous.
    assert {"bundle", "resources", "targets", "variables", "include"} <= set(cli_schema["properties"])
    job = cli_schema["$defs"]["github.com"]["databricks"]["cli"]["bundle"]["config"]["resources.Job"]
    assert job["oneOf"][0]["additionalProperties"] is False  # unknown keys inside a job are errors


def test_bundle_matches_the_cli_schema(cli_schema):
    assert schema_errors(cli_schema, load_bundle()) == []


def test_every_included_file_alone_matches_the_cli_schema(cli_schema):
    # The CLI reads each file as a bundle fragment, so each must be valid on its own too.
    for path in [ROOT / "databricks.yml", *included_files()]:
        assert schema_errors(cli_schema, yaml.safe_load(path.read_text())) == [], path.name


def broken_copies(bundle: dict):
    """Deliberately broken variants, each a mistake the schema must catch."""
    unknown_job_key = copy.deepcopy(bundle)
    jobs_of(unknown_job_key)[STAGE_JOB]["max_concurent_runs"] = 1  # misspelt key
    yield "unknown key under a job", unknown_job_key
    wrong_type = copy.deepcopy(bundle)
    jobs_of(wrong_type)[WHOLE_RUN_JOB]["max_concurrent_runs"] = "one"  # not an int nor ${...}
    yield "string where an integer belongs", wrong_type
    unknown_task_key = copy.deepcopy(bundle)
    jobs_of(unknown_task_key)[WHOLE_RUN_JOB]["tasks"][0]["python_wheel_task"]["entrypoint"] = "x"
    yield "unknown key in a wheel task", unknown_task_key
    bad_target = copy.deepcopy(bundle)
    bad_target["targets"]["prod"]["run_as"] = {"service_principal": "x"}  # the key is service_principal_name
    yield "wrong run_as key", bad_target
    misspelt_section = copy.deepcopy(bundle)
    misspelt_section["target"] = misspelt_section.pop("targets")
    yield "misspelt top-level section", misspelt_section
    parameters_as_map = copy.deepcopy(bundle)
    jobs_of(parameters_as_map)[STAGE_JOB]["parameters"] = {"warehouse": "/tmp"}  # a list of {name, default}
    yield "job parameters as a mapping", parameters_as_map


@pytest.mark.parametrize("case", [name for name, _ in broken_copies(load_bundle())])
def test_the_schema_rejects_a_broken_bundle(cli_schema, case):
    broken = dict(broken_copies(load_bundle()))[case]
    assert schema_errors(cli_schema, broken), f"the schema accepted a bundle with {case}"


# --- the rules of a deployable bundle --------------------------------------------------------------


def target_variables(bundle: dict, target: str) -> dict:
    values = {name: spec.get("default") for name, spec in bundle["variables"].items()}
    values.update(bundle["targets"][target].get("variables", {}))
    return values


def test_prod_has_its_own_root_path_and_runs_as_one_identity():
    prod = load_bundle()["targets"]["prod"]
    assert prod["mode"] == "production"
    root_path = prod["workspace"]["root_path"]
    assert root_path.startswith("/Workspace/") and "current_user" not in root_path  # shared, not the deployer's
    identities = {key for key in ("service_principal_name", "user_name") if prod["run_as"].get(key)}
    assert len(identities) == 1, prod["run_as"]


def test_each_target_has_its_own_warehouse():
    bundle = load_bundle()
    dev, prod = (target_variables(bundle, t)["warehouse"] for t in ("dev", "prod"))
    assert dev and prod
    assert "${workspace.current_user." in dev and "current_user" not in prod  # dev per user, prod shared
    # Neither folder holds the other, so neither target's _staging/ is inside the other's warehouse.
    assert not dev.startswith(prod.rstrip("/") + "/") and not prod.startswith(dev.rstrip("/") + "/")
    assert dev != prod


def test_one_run_at_a_time():
    for name, job in jobs_of(load_bundle()).items():
        assert job.get("max_concurrent_runs") == 1, name


def test_serverless_environments_use_environment_version():
    environments = [env for job in jobs_of(load_bundle()).values() for env in job.get("environments", [])]
    assert environments, "the whole-run job is serverless and needs an environment"
    for env in environments:
        assert "client" not in env["spec"], "client is deprecated: use environment_version"
        assert env["spec"].get("environment_version")
    assert "client:" not in "".join(path.read_text() for path in included_files())


def test_shared_values_are_job_parameters_not_repeated_blocks():
    bundle = load_bundle()
    for name, job in jobs_of(bundle).items():
        defined = [p["name"] for p in job.get("parameters", [])]
        assert len(defined) == len(set(defined)), f"{name}: a job parameter is defined twice"
        used: set[str] = set()
        for task in job["tasks"]:
            values = list(task.get("python_wheel_task", {}).get("parameters", []))
            values += list(task.get("notebook_task", {}).get("base_parameters", {}).values())
            text = " ".join(map(str, values))
            assert "${var." not in text, f"{name}/{task['task_key']}: a bundle variable in a task; use a job parameter"
            used |= set(JOB_PARAMETER.findall(text))
        assert used <= set(defined), f"{name}: undefined job parameters {used - set(defined)}"
        assert set(defined) <= used, f"{name}: unused job parameters {set(defined) - used}"


def test_the_api_key_secret_has_one_name():
    bundle = load_bundle()
    secret_variables = [name for name in bundle["variables"] if "secret" in name]
    assert secret_variables == ["llm_api_key_secret"]
    for target in bundle["targets"]:
        assert target_variables(bundle, target)["llm_api_key_secret"].count("/") == 1  # scope/key
    text = "\n".join(path.read_text() for path in [ROOT / "databricks.yml", *included_files()])
    assert "{{secrets/" not in text and "databricks.secret_" not in text and "spark_env_vars" not in text
    for job_name, task in wheel_tasks(bundle):
        sets = [p for p in task["python_wheel_task"]["parameters"] if str(p).startswith(SECRET_SET)]
        assert sets == [SECRET_SET + "{{job.parameters.llm_api_key_secret}}"], f"{job_name}/{task['task_key']}"
    for job in jobs_of(bundle).values():
        defaults = {p["name"]: p["default"] for p in job["parameters"]}
        assert defaults["llm_api_key_secret"] == "${var.llm_api_key_secret}"


def test_config_is_named_by_package_not_by_repo_path():
    bundle = load_bundle()
    assert "/" not in target_variables(bundle, "dev")["llm_config"]
    for job_name, task in wheel_tasks(bundle):
        params = task["python_wheel_task"]["parameters"]
        assert params[params.index("--config") + 1] == "{{job.parameters.config}}", job_name


def test_the_quality_report_runs_after_the_pipeline():
    bundle = load_bundle()
    notebook = (ROOT / "notebooks" / "quality_report.ipynb").read_text()
    last_task = {WHOLE_RUN_JOB: "run_pipeline", STAGE_JOB: "decontaminate"}
    for job_name, after in last_task.items():
        tasks = {t["task_key"]: t for t in jobs_of(bundle)[job_name]["tasks"]}
        report = tasks["quality_report"]
        assert [d["task_key"] for d in report["depends_on"]] == [after]
        # Paths in resources/*.yml are relative to that file.
        assert (ROOT / "resources" / report["notebook_task"]["notebook_path"]).resolve() == ROOT / "notebooks" / "quality_report.ipynb"
        assert report["libraries"] == [{"whl": "../dist/*.whl"}], "the notebook imports webscale_rl"
        assert report["job_cluster_key"] in {c["job_cluster_key"] for c in jobs_of(bundle)[job_name]["job_clusters"]}
        for widget in report["notebook_task"]["base_parameters"]:
            assert f'_parameter(\\"{widget}\\"' in notebook, f"the notebook does not read the {widget!r} parameter"


def test_the_merge_rejects_a_resource_defined_twice():
    bundle = load_bundle()
    duplicate = {"resources": {"jobs": {STAGE_JOB: {"name": "again"}}}}
    with pytest.raises(AssertionError, match="more than one file"):
        merge(bundle, duplicate)


def resolve(text: str, bundle: dict, target: str) -> str:
    """${var.x}, ${bundle.*} and ${workspace.current_user.*} as a deploy to `target` resolves them."""
    values = {f"var.{k}": str(v) for k, v in target_variables(bundle, target).items()}
    values |= {"bundle.name": bundle["bundle"]["name"], "bundle.target": target}
    values |= {"workspace.current_user.short_name": "someone", "workspace.current_user.userName": "someone@example.com"}
    for _ in range(5):  # variables may refer to variables
        text = BUNDLE_REFERENCE.sub(lambda m: values[m.group(1)], text)  # KeyError: unknown reference
    assert "${" not in text, text
    return text


def run_parameters(job: dict, task: dict, bundle: dict, target: str) -> list[str]:
    """A wheel task's arguments as a run started with the job's default parameters receives them."""
    defaults = {p["name"]: resolve(str(p["default"]), bundle, target) for p in job["parameters"]}
    return [JOB_PARAMETER.sub(lambda m: defaults[m.group(1)], str(p)) for p in task["python_wheel_task"]["parameters"]]


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_every_wheel_task_runs_the_cli_with_a_valid_config(target):
    bundle = load_bundle()
    variables = target_variables(bundle, target)
    for job_name, task in wheel_tasks(bundle):
        args = build_parser().parse_args(run_parameters(jobs_of(bundle)[job_name], task, bundle, target))
        assert args.command == "run", job_name
        assert args.warehouse == resolve(variables["warehouse"], bundle, target)
        cfg = load_config(args.config, args.overrides)  # a packaged name; unknown keys or bad values raise
        assert cfg.llm.api_key_secret == variables["llm_api_key_secret"]
        assert (cfg.warehouse.catalog, cfg.warehouse.schema) == (variables["catalog"], variables["schema"])
        assert cfg.llm.max_concurrency == int(variables["llm_concurrency"])
        if args.start in ("ingest", None):
            assert args.input == [variables["input_path"]], f"{job_name}/{task['task_key']} ingests but has no --input"


def test_the_eval_sets_reach_every_task_that_decontaminates():
    """The variable's default is no set; a task whose stages include decontaminate gets the job
    parameter as decontam.eval_sets (a YAML list), the others do not."""
    bundle = load_bundle()
    assert target_variables(bundle, "dev")["eval_sets"] == "[]"
    passing = []
    for job_name, task in wheel_tasks(bundle):
        args = build_parser().parse_args(run_parameters(jobs_of(bundle)[job_name], task, bundle, "dev"))
        assert load_config(args.config, args.overrides).decontam.eval_sets == [], job_name
        if "decontam.eval_sets={{job.parameters.eval_sets}}" in task["python_wheel_task"]["parameters"]:
            passing.append(f"{job_name}/{task['task_key']}")
        else:
            assert args.until not in (None, "decontaminate"), f"{job_name}/{task['task_key']} decontaminates without the eval sets"
    assert sorted(passing) == sorted([f"{WHOLE_RUN_JOB}/run_pipeline", f"{STAGE_JOB}/decontaminate"])
    listed = load_config(None, ["decontam.eval_sets=[mmlu=/Volumes/main/evals/raw/mmlu.jsonl, /Volumes/main/evals/raw/gsm8k.csv]"])
    assert listed.decontam.eval_sets == ["mmlu=/Volumes/main/evals/raw/mmlu.jsonl", "/Volumes/main/evals/raw/gsm8k.csv"]


# --- `databricks bundle validate`, against a stub workspace on 127.0.0.1 ---------------------------

SERVICE_PRINCIPAL = "00000000-0000-0000-0000-000000000001"


@pytest.fixture
def bundle_copy(tmp_path) -> Path:
    """The bundle's files in a scratch folder (validate writes .databricks/ beside databricks.yml)."""
    shutil.copy(ROOT / "databricks.yml", tmp_path)
    for folder in ("resources", "notebooks"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def validated(binary: Path, root: Path, args: list[str]) -> dict:
    with stub_workspace() as host:
        done = bundle_validate(binary, root, host, args)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "Error" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def test_cli_validates_dev(cli_binary, bundle_copy):
    config = validated(cli_binary, bundle_copy, ["-t", "dev"])
    warehouse = config["variables"]["warehouse"]["value"]
    assert warehouse.endswith("/someone")  # the stub's user: each developer has their own
    assert config["workspace"]["root_path"].startswith("/Workspace/Users/someone@example.com/")
    for name, job in config["resources"]["jobs"].items():
        assert job["max_concurrent_runs"] == 1, name
        assert {p["name"]: p["default"] for p in job["parameters"]}["warehouse"] == warehouse


def test_cli_validates_prod_with_a_service_principal(cli_binary, bundle_copy):
    config = validated(cli_binary, bundle_copy, ["-t", "prod", "--var", f"run_as_service_principal={SERVICE_PRINCIPAL}"])
    assert config["run_as"] == {"service_principal_name": SERVICE_PRINCIPAL}
    assert config["workspace"]["root_path"] == f"/Workspace/Users/{SERVICE_PRINCIPAL}/.bundle/webscale-rl/prod"
    warehouse = config["variables"]["warehouse"]["value"]
    assert "someone" not in warehouse  # shared, whoever deploys
    for job in config["resources"]["jobs"].values():
        assert {p["name"]: p["default"] for p in job["parameters"]}["warehouse"] == warehouse


def test_cli_refuses_prod_without_a_run_as_identity(cli_binary, bundle_copy):
    with stub_workspace() as host:
        done = bundle_validate(cli_binary, bundle_copy, host, ["-t", "prod"])
    assert done.returncode != 0 and "run_as" in done.stderr, done.stderr


def test_cli_refuses_a_notebook_task_whose_notebook_is_missing(cli_binary, bundle_copy):
    (bundle_copy / "notebooks" / "quality_report.ipynb").unlink()
    with stub_workspace() as host:
        done = bundle_validate(cli_binary, bundle_copy, host, ["-t", "dev"])
    assert done.returncode != 0 and "quality_report" in done.stderr, done.stderr
