"""Every claim the README makes about behaviour, and the test that checks it.

A claim is quoted as the README says it (whitespace aside). A new behavioural sentence in the README gets a row here
with its test, or it goes. Slow tests (`pytest -m slow`) are marked in the node id's comment.
"""

import re

import pytest

from conftest import ROOT

README = ROOT / "README.md"

CLAIMS = [
    ("in bf16 where the CPU has bf16 instructions",
     ["tests/test_precision.py::test_the_fmnist_configs_train_in_bf16_mixed",
      "tests/test_precision.py::test_bf16_mixed_runs_in_fp32_with_a_warning_on_a_cpu_without_bf16_instructions"]),
    ("It prints where everything goes",
     ["tests/test_run_report.py::test_fit_starts_with_one_summary_of_data_sizes_precision_steps_and_outputs"]),
    ("`last.ckpt`: raw weights and their EMA side by side",
     ["tests/test_lifecycle.py::test_the_end_of_fit_is_saved_off_the_periodic_schedule_with_raw_and_ema_apart"]),
    ("`make test` is what CI runs",
     ["tests/test_readme.py::test_readme_keeps_exactly_two_setup_commands_and_ci_runs_one"]),
    ("The folder** can be an image folder (one sub-folder per class gives labels), a folder of Hub-layout "
     "`.parquet`/`.arrow`/`.csv` files, a `save_to_disk` folder",
     ["tests/data/test_sources.py::test_cli_trains_on_a_local_layout", "tests/data/test_sources.py::test_hub_layout_arrow",
      "tests/data/test_sources.py::test_save_to_disk_dataset_dict_and_dataset"]),
    ("Images are resized and centre-cropped to `image_size`; smaller ones are padded or upscaled",
     ["tests/data/test_preprocess.py::test_center_crop_arr_facts", "tests/data/test_preprocess.py::test_small_images_are_announced_once"]),
    ("`fit` prints what it found first",
     ["tests/test_run_report.py::test_fit_starts_with_one_summary_of_data_sizes_precision_steps_and_outputs"]),
    ("`fit ... --ckpt_path last` continues a stopped run", ["tests/test_lifecycle.py::test_every_stop_resumes_exactly"]),
    ("Ctrl-C saves `interrupted.ckpt` and prints the command that resumes",
     ["tests/test_lifecycle.py::test_every_stop_resumes_exactly[ssd-ctrl_c_in_training]",
      "tests/test_lifecycle.py::test_a_signal_from_another_process_stops_a_run_that_resumes_exactly"]),  # slow
    ("prints FID and KID with 95% bootstrap intervals and writes `fid.json` beside the samples",
     ["tests/metrics/test_score.py::test_fid_labels_every_line_writes_json_and_ranks_real_above_noise",
      "tests/test_folder_template.py::test_template_fits_predicts_scores_and_exports_a_generated_folder"]),  # slow
    ("(a local file) it is the standard FID",
     ["tests/metrics/test_fid.py::test_inception_path_with_local_weights",
      "tests/metrics/test_score.py::test_fid_without_labels_or_inception_names_the_fix"]),
    ("features come from a classifier trained on the reference's labels, and every line says so",
     ["tests/metrics/test_score.py::test_fid_labels_every_line_writes_json_and_ranks_real_above_noise",
      "tests/metrics/test_score.py::test_fid_trains_its_classifier_and_refuses_it_on_unlearnable_labels",
      "tests/metrics/test_score.py::test_fid_refuses_a_classifier_below_the_accuracy_bar"]),
    ("Below 2,048 samples it warns that FID is biased",
     ["tests/metrics/test_score.py::test_fid_labels_every_line_writes_json_and_ranks_real_above_noise"]),
    ("writes `config.json` + `model.safetensors` (EMA weights, no pickle)",
     ["tests/test_export.py::test_an_exported_folder_samples_what_the_checkpoint_samples",
      "tests/models/test_pretrained.py::test_ema_weights_are_the_ones_sampled_with_and_raw_is_recorded_when_the_ema_has_not_started"]),
    ("`--repo_id me/name` also uploads it to the Hugging Face Hub",
     ["tests/models/test_pretrained.py::test_push_to_hub_uploads_the_folder_through_hfapi"]),
    ("the generated reference [docs/config.md](docs/config.md)",
     ["tests/test_config_reference.py::test_docs_config_md_is_the_generated_text"]),
    ("Any option can be overridden on the command line",
     ["tests/test_cli.py::test_predict_takes_sampling_overrides_over_the_checkpoint_and_writes_nothing_over_the_run",
      "tests/io/test_resume_overrides.py::test_lr_and_weight_decay_of_a_resumed_run_reach_every_param_group"]),
    ("ssd --help # the subcommands",
     ["tests/test_cli.py::test_ssd_help_lists_every_subcommand_without_importing_torch_and_version_is_the_package_s"]),
    ("`fit` refuses a folder that holds another run's checkpoints",
     ["tests/test_bad_input.py::test_bad_input_fails_early_with_a_clear_message[second-fit-into-a-finished-run]",
      "tests/test_lifecycle.py::test_a_refused_run_leaves_the_running_owners_lock"]),
    ("`validate`, `test` and `predict` refuse to run without a checkpoint",
     ["tests/test_bad_input.py::test_bad_input_fails_early_with_a_clear_message[validate-without-checkpoint]",
      "tests/test_bad_input.py::test_bad_input_fails_early_with_a_clear_message[test-without-checkpoint]",
      "tests/test_bad_input.py::test_bad_input_fails_early_with_a_clear_message[predict-without-checkpoint]"]),
    ("the model's definition comes from the checkpoint",
     ["tests/test_bad_input.py::test_bad_input_fails_early_with_a_clear_message[override-of-the-architecture]"]),
    ("sampling and optimiser settings from the config and the command line win over it",
     ["tests/test_cli.py::test_predict_takes_sampling_overrides_over_the_checkpoint_and_writes_nothing_over_the_run",
      "tests/io/test_resume_overrides.py::test_lr_and_weight_decay_of_a_resumed_run_reach_every_param_group"]),
    ("`predict` never overwrites: each run writes a new `run_NNN` folder",
     ["tests/test_cli.py::test_each_predict_run_gets_a_new_folder",
      "tests/test_bad_input.py::test_bad_input_fails_early_with_a_clear_message[predict-dir-has-samples]"]),
    ("so it does not depend on the batch size or the number of devices",
     ["tests/models/test_pretrained.py::test_generate_is_seeded_per_image_whatever_the_batch_size",
      "tests/test_distributed.py::test_ddp_fit_then_sharded_predict_is_bit_identical"]),  # slow
    ("Bad input fails before training starts, as one `error:` line naming the value and the fix",
     ["tests/test_bad_input.py::test_bad_input_fails_early_with_a_clear_message",
      "tests/test_cli.py::test_every_subcommand_prints_a_refusal_as_one_line_without_traceback"]),
    ("the final sample grid and checkpoints/last.ckpt go under root", ["tests/test_readme.py::test_readme_python_example"]),
    ("an `ssd export` folder, or a Hub repo id",
     ["tests/test_readme.py::test_readme_pretrained_example",
      "tests/models/test_pretrained.py::test_a_hub_id_goes_through_snapshot_download_and_offline_fails_in_one_line"]),
]  # fmt: skip


def _flat(text: str) -> str:
    return " ".join(text.replace("#", " # ").split())


@pytest.mark.parametrize("claim, tests", CLAIMS, ids=[c[:50] for c, _ in CLAIMS])
def test_the_claim_is_in_the_readme_and_its_tests_exist(claim, tests):
    assert _flat(claim) in _flat(README.read_text()), f"the README no longer says {claim!r}: update this table"
    for node in tests:
        path, name = node.split("::")
        base, _, case = name.partition("[")
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {re.escape(base)}\(", source, re.M), f"{node}: no such test"
        if case:  # a parametrized case: its id is spelled in the file (or built from its parameters)
            assert all(part in source for part in case.rstrip("]").split("-") if part), f"{node}: no such case"


def test_the_readme_points_here():
    assert "tests/test_readme_claims.py" in README.read_text()
