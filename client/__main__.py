import os

if os.environ.get("WEIR_DIE_WITH_PARENT"):  # a daemon of an attached local cluster: never outlive its owner
    from taskmanager.worker import die_with_parent

    die_with_parent(int(os.environ.pop("WEIR_DIE_WITH_PARENT")))

from client.cli import main  # noqa: E402

main()
