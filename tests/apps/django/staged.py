"""What the test apps' `<app>_write STAGE` commands share: the models as of the newest applied migration (the model
files describe the last one only), and a command that writes one stage in one transaction."""
from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder


def models_as_migrated(app, *names):
    """The app's models `names` as of its newest applied migration, and that migration's name."""
    newest = MigrationRecorder.Migration.objects.filter(app=app).order_by("-name").first().name
    state = MigrationExecutor(connection).loader.project_state((app, newest))
    return [state.apps.get_model(app, name) for name in names], newest


class StageCommand(BaseCommand):
    """`manage.py <command> STAGE`: runs `write(stage)` in one transaction."""

    def add_arguments(self, parser):
        parser.add_argument("stage", type=int)

    def handle(self, *args, stage, **options):
        with transaction.atomic():
            self.write(stage)

    def write(self, stage):
        raise NotImplementedError
