"""A small SQLAlchemy ORM application writing to SQLite while lite2pg syncs the file to PostgreSQL.

    python3 examples/sqlalchemy_app.py shop.db 500      # create the tables (first run) and make 500 changes
    lite2pg run --sqlite shop.db --postgres URL          # in another terminal: PostgreSQL follows every commit

After `lite2pg cutover`, the same code writes to PostgreSQL, unchanged, given a database URL instead of a path:

    python3 examples/sqlalchemy_app.py postgresql+psycopg2://user@host/db 500

Nothing in the application knows about lite2pg: capture runs inside SQLite, so ORM sessions, raw SQL and other
processes are all seen.
"""

import random
import sys
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str]
    balance: Mapped[float] = mapped_column(default=0.0)
    orders: Mapped[list["Order"]] = relationship(back_populates="customer", cascade="all, delete-orphan")


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    total: Mapped[float]
    placed_at: Mapped[datetime] = mapped_column(default=datetime.now)
    receipt: Mapped[bytes | None] = mapped_column(LargeBinary)
    customer: Mapped[Customer] = relationship(back_populates="orders")


def main(database: str, changes: int) -> None:
    if "://" in database:
        engine = create_engine(database)
    else:
        engine = create_engine(f"sqlite:///{database}")

        @event.listens_for(engine, "connect")
        def _wal(connection, _record):
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA busy_timeout = 30000")

    Base.metadata.create_all(engine)
    rng = random.Random(7)
    for n in range(changes):
        with Session(engine) as session, session.begin():
            customer_id = rng.randrange(1, 60)
            customer = session.get(Customer, customer_id)
            action = rng.randrange(4)
            if customer is None:
                session.add(Customer(id=customer_id, email=f"c{customer_id}@example.com", name=f"customer {customer_id}"))
            elif action == 0:
                session.delete(customer)
            elif action == 1:
                customer.balance += rng.randrange(1000) / 7
            else:
                customer.orders.append(Order(total=rng.randrange(100_000) / 100, receipt=rng.randbytes(32)))
    print(f"made {changes} changes in {engine.url.render_as_string(hide_password=True)}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200)
