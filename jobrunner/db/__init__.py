"""PostgreSQL: connections, migrations, and the query functions over sql/*.sql."""
