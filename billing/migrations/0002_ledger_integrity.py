"""The ledger's rules, enforced by PostgreSQL rather than trusted to the code:

- every journal entry sums to zero per currency: a DEFERRABLE INITIALLY DEFERRED constraint trigger
  checks each entry touched by a transaction at its commit (so an entry may be written posting by
  posting, but never committed unbalanced);
- journal entries and postings are append-only: UPDATE and DELETE are refused (corrections are
  reversing entries). TRUNCATE (test teardown only) is not a row operation and is not refused.
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION billing_journal_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced record;
BEGIN
    SELECT currency, SUM(amount_minor) AS total INTO unbalanced
      FROM billing_journalposting WHERE entry_id = NEW.entry_id
     GROUP BY currency HAVING SUM(amount_minor) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % does not balance: % % left over', NEW.entry_id, unbalanced.total, unbalanced.currency
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER billing_journal_posting_balanced
    AFTER INSERT ON billing_journalposting
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing_journal_entry_balanced();

CREATE FUNCTION billing_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % refused (post a reversing entry instead)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER billing_journalposting_append_only BEFORE UPDATE OR DELETE ON billing_journalposting
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_append_only();
CREATE TRIGGER billing_journalentry_append_only BEFORE UPDATE OR DELETE ON billing_journalentry
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS billing_journalentry_append_only ON billing_journalentry;
DROP TRIGGER IF EXISTS billing_journalposting_append_only ON billing_journalposting;
DROP FUNCTION IF EXISTS billing_ledger_append_only();
DROP TRIGGER IF EXISTS billing_journal_posting_balanced ON billing_journalposting;
DROP FUNCTION IF EXISTS billing_journal_entry_balanced();
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
