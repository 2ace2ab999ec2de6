#!/usr/bin/env bash
# Runs skel_jax on a Cloud TPU VM or pod slice: create it, install this checkout on every worker,
# train or evaluate on all workers at once, copy the work directory to and from a bucket, delete.
# See launch/README.md for the gcloud commands each step runs. Needs bash 4.4 or later.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: launch/tpu_vm.sh [--dry-run] COMMAND [FLAGS...]

Commands:
  create        Create the TPU VM; with QUEUED=1 a queued resource, waiting until it is ACTIVE.
  install       Copy this checkout to every worker and install it with jax[tpu].
  pull          Copy BUCKET/RUN_NAME into WORKDIR (resumes a run saved there).
  train FLAGS   python -m skel_jax.main --workdir=WORKDIR FLAGS on every worker, logs streamed.
  eval FLAGS    python -m skel_jax.evaluate --workdir=WORKDIR FLAGS on every worker.
  logs          Follow worker 0's log of the latest train or eval (after a dropped connection).
  push          Copy WORKDIR to BUCKET/RUN_NAME.
  delete        Delete the TPU VM or queued resource.
  run FLAGS     create, install, pull, train FLAGS, push (also after a failed training), delete
                (also after any failure).

--dry-run prints the commands, one per line, instead of running them.

Settings (environment variables):
  TPU_NAME          TPU VM (and queued resource) name. Required.
  ZONE              e.g. us-central2-b. Required.
  PROJECT           Google Cloud project; default: gcloud's configured project.
  ACCELERATOR_TYPE  default v5litepod-8 (one worker); e.g. v4-32 (four workers).
  RUNTIME_VERSION   TPU software version; default v2-alpha-tpuv5-lite (v4: tpu-ubuntu2204-base).
  QUEUED=1          Request the TPU as a queued resource.
  SPOT=1            Spot capacity (cheaper, preemptible).
  BUCKET            gs://bucket/folder holding run folders; needed by pull, push and run.
  RUN_NAME          default TPU_NAME.
  WORKDIR           Work directory on the workers, relative to the home folder or absolute;
                    default skel_jax_runs/RUN_NAME. With more than one worker it must be on a
                    file system all workers share (see launch/README.md).
EOF
}

die() {
    echo "tpu_vm.sh: $*" >&2
    exit 2
}

# The words as one shell command line, quoting those that need it (a flag's value only).
quote_words() {
    local word value words=()
    for word in "$@"; do
        if [[ "$word" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            words+=("$word")
        elif [[ "$word" =~ ^(--[A-Za-z0-9_.-]+=)(.*)$ ]]; then
            value="${BASH_REMATCH[2]}"
            words+=("${BASH_REMATCH[1]}${value@Q}")
        else
            words+=("${word@Q}")
        fi
    done
    echo "${words[*]}"
}

# Runs a command, or with --dry-run prints it so that it can be pasted into a shell.
run() {
    if ((dry_run)); then
        quote_words "$@"
    else
        "$@"
    fi
}

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
    dry_run=1
    shift
fi
command="${1:-}"
if [[ -z "$command" || "$command" == "-h" || "$command" == "--help" ]]; then
    usage
    [[ -n "$command" ]]
    exit
fi
shift

[[ -n "${TPU_NAME:-}" ]] || die "set TPU_NAME to the TPU VM's name."
[[ -n "${ZONE:-}" ]] || die "set ZONE to the TPU's zone, e.g. us-central2-b."
accelerator_type="${ACCELERATOR_TYPE:-v5litepod-8}"
runtime_version="${RUNTIME_VERSION:-v2-alpha-tpuv5-lite}"
run_name="${RUN_NAME:-$TPU_NAME}"
workdir="${WORKDIR:-skel_jax_runs/$run_name}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# $HOME is expanded on the workers.
remote_log="\$HOME/skel_jax_logs/$(quote_words "$run_name").log"

gcloud_flags=("--zone=$ZONE")
if [[ -n "${PROJECT:-}" ]]; then
    gcloud_flags+=("--project=$PROJECT")
fi
capacity_flags=()
if [[ "${SPOT:-0}" == 1 ]]; then
    capacity_flags+=(--spot)
fi

on_workers() {
    local worker="$1" remote_command="$2"
    run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${gcloud_flags[@]}" "--worker=$worker" \
        "--command=$remote_command"
}

require_bucket() {
    [[ "${BUCKET:-}" == gs://* ]] || die "set BUCKET to a gs:// folder for the run folders."
}

create_tpu() {
    if [[ "${QUEUED:-0}" == 1 ]]; then
        run gcloud compute tpus queued-resources create "$TPU_NAME" "${gcloud_flags[@]}" \
            "--node-id=$TPU_NAME" "--accelerator-type=$accelerator_type" \
            "--runtime-version=$runtime_version" "${capacity_flags[@]}"
        wait_until_active
    else
        run gcloud compute tpus tpu-vm create "$TPU_NAME" "${gcloud_flags[@]}" \
            "--accelerator-type=$accelerator_type" "--version=$runtime_version" \
            "${capacity_flags[@]}"
    fi
}

wait_until_active() {
    local describe=(gcloud compute tpus queued-resources describe "$TPU_NAME"
                    "${gcloud_flags[@]}" "--format=value(state.state)")
    if ((dry_run)); then
        run "${describe[@]}"
        return
    fi
    local state
    while true; do
        state="$("${describe[@]}")"
        case "$state" in
            ACTIVE) return ;;
            FAILED | SUSPENDED) die "queued resource $TPU_NAME is $state." ;;
        esac
        echo "Queued resource $TPU_NAME is $state; checking again in ${POLL_SECONDS:-60} s." >&2
        sleep "${POLL_SECONDS:-60}"
    done
}

install_project() {
    local archive_dir
    archive_dir="$(mktemp -d)"
    # Tracked and untracked files, less what .gitignore excludes (build output) and less any
    # virtual environment in the checkout, whatever its name (a directory with pyvenv.cfg).
    local -a list=(git -C "$repo" ls-files -z --cached --others --exclude-standard)
    local venv_config
    while IFS= read -r -d '' venv_config; do
        list+=("--exclude=/$(dirname "${venv_config#"$repo"/}")/")
    done < <(find "$repo" -name .git -prune -o -name pyvenv.cfg -print0)
    if ((dry_run)); then
        echo "$(quote_words "${list[@]}") |" \
            "$(quote_words tar -C "$repo" --null -T - -czf "$archive_dir/skel_jax.tar.gz")"
    else
        "${list[@]}" | tar -C "$repo" --null -T - -czf "$archive_dir/skel_jax.tar.gz"
    fi
    run gcloud compute tpus tpu-vm scp "$archive_dir/skel_jax.tar.gz" \
        "$TPU_NAME:skel_jax.tar.gz" "${gcloud_flags[@]}" --worker=all
    rm -rf "$archive_dir"
    # TPU VM images ship Python 3.10; uv provides the 3.11+ that skel_jax needs.
    on_workers all "set -euo pipefail; python3 -m pip install --user --quiet uv \
&& rm -rf skel_jax && mkdir skel_jax && tar -xzf skel_jax.tar.gz -C skel_jax \
&& ~/.local/bin/uv venv --allow-existing --python=3.11 skel_jax_venv \
&& ~/.local/bin/uv pip install --python=skel_jax_venv/bin/python -e ./skel_jax \"jax[tpu]\""
}

# Starts a module on every worker in the background, so that a dropped SSH connection does not
# stop it, and streams its log until it ends; fails if it fails on any worker.
start_on_all_workers() {
    local module="$1"
    shift
    on_workers all "set -euo pipefail; mkdir -p skel_jax_logs $(quote_words "$workdir"); \
workdir=\$(realpath $(quote_words "$workdir")); cd skel_jax; : > $remote_log; \
SKEL_JAX_DISTRIBUTED=1 nohup ../skel_jax_venv/bin/python -m $module --workdir=\"\$workdir\" \
$(quote_words "$@") > $remote_log 2>&1 & pid=\$!; tail --pid=\$pid -n +1 -f $remote_log; \
wait \$pid"
}

pull_workdir() {
    require_bucket
    # Worker 0 only: a workdir on local disks allows one worker, and a shared one needs one copy.
    on_workers 0 "set -euo pipefail; mkdir -p $(quote_words "$workdir"); \
if gcloud storage ls $(quote_words "$BUCKET/$run_name") > /dev/null 2>&1; then \
gcloud storage rsync --recursive $(quote_words "$BUCKET/$run_name" "$workdir"); fi"
}

push_workdir() {
    require_bucket
    on_workers 0 "gcloud storage rsync --recursive $(quote_words "$workdir" "$BUCKET/$run_name")"
}

delete_tpu() {
    if [[ "${QUEUED:-0}" == 1 ]]; then
        run gcloud compute tpus queued-resources delete "$TPU_NAME" "${gcloud_flags[@]}" \
            --force --quiet
    else
        run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${gcloud_flags[@]}" --quiet
    fi
}

case "$command" in
    create) create_tpu ;;
    install) install_project ;;
    pull) pull_workdir ;;
    train) start_on_all_workers skel_jax.main "$@" ;;
    eval) start_on_all_workers skel_jax.evaluate "$@" ;;
    logs) on_workers 0 "tail -n 100 -F $remote_log" ;;
    push) push_workdir ;;
    delete) delete_tpu ;;
    run)
        require_bucket
        create_tpu
        trap delete_tpu EXIT
        install_project
        pull_workdir
        status=0
        start_on_all_workers skel_jax.main "$@" || status=$?
        # Whatever training left (the checkpoints before a failure, too) is worth keeping.
        push_workdir
        exit "$status"
        ;;
    *) die "unknown command '$command'; run launch/tpu_vm.sh --help for the list." ;;
esac
