"""Alembic migrations in batch mode (how Alembic changes columns on SQLite: copy into `_alembic_tmp_<table>`, drop,
rename) and writes between them, one step per call: `alembic_steps.py STEP` with the file in SHOP_SQLITE."""
import os
import sys

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

engine = sa.create_engine("sqlite:///" + os.environ["SHOP_SQLITE"])


def migrate(change):
    with engine.begin() as conn:
        change(Operations(MigrationContext.configure(conn)))


def create(op):
    op.create_table(
        "item",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sku", sa.String(20), nullable=False),
        sa.Column("label", sa.String(50), nullable=False),
        sa.Column("price", sa.Numeric(10, 2), nullable=True),
        sa.Column("old_note", sa.Text),
        sa.Column("legacy", sa.Integer, server_default="0"),
    )
    op.create_index("ix_item_label", "item", ["label"])


def loosen(op):
    with op.batch_alter_table("item") as batch:
        batch.alter_column("label", existing_type=sa.String(50), nullable=True)


def tighten(op):
    op.execute("UPDATE item SET price = 0 WHERE price IS NULL")
    with op.batch_alter_table("item") as batch:
        batch.alter_column("price", existing_type=sa.Numeric(10, 2), nullable=False)
        batch.create_unique_constraint("uq_item_sku", ["sku"])


def rename_and_drop(op):
    with op.batch_alter_table("item") as batch:
        batch.alter_column("old_note", new_column_name="note", existing_type=sa.Text)
        batch.drop_column("legacy")


def write(nulls=False):
    item = sa.Table("item", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        start = conn.execute(sa.select(sa.func.coalesce(sa.func.max(item.c.id), 0))).scalar()
        rows = []
        for n in range(start + 1, start + 41):
            row = {"sku": f"sku-{n}", "label": None if nulls and n % 2 else f"item {n}", "price": None if nulls else n * 1.25}
            row[("note" if "note" in item.c else "old_note")] = f"note {n}"
            rows.append(row)
        conn.execute(item.insert(), rows)
        conn.execute(item.update().where(item.c.id % 7 == 0).values(label="seventh"))
        conn.execute(item.delete().where(item.c.id % 11 == 0))


steps = {
    "create": lambda: migrate(create),
    "loosen": lambda: migrate(loosen),
    "tighten": lambda: migrate(tighten),
    "rename_and_drop": lambda: migrate(rename_and_drop),
    "write": write,
    "write_nulls": lambda: write(nulls=True),
}
steps[sys.argv[1]]()
