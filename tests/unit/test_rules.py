"""The rules file: defaults, durations, key-path errors, the example file, `nudge rules check`."""

from __future__ import annotations

import subprocess
import sys
from datetime import time, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triggers.durations import MAX_DURATION, format_duration
from triggers.rules import Rules, RulesError, dump_rules, load_rules, parse_duration, parse_rules

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NUDGE = [sys.executable, "-m", "cli.main"]

CONTRACT_EXAMPLE = """
version: 1
default_timezone: Asia/Shanghai
triggers:
  cart_abandonment:        {enabled: true, stages: [1h, 24h], min_cart_value: 0, cooldown: 24h, priority: 100}
  browse_abandonment:      {enabled: true, stages: [2h], cooldown: 24h, priority: 50}
  replenishment:           {enabled: true, fire_at_fraction: 0.9, products: {}, categories: {},
                            learn_from_history: true, min_purchases: 2, priority: 80}
  first_purchase_followup: {enabled: true, stages: [3d], priority: 60}
  lapsing:                 {enabled: true, factor: 1.5, min_orders: 3, priority: 70}
  dormancy:                {enabled: true, stages: [30d, 60d, 90d], audience: customers, priority: 40}
contact_policy:
  frequency_cap: {max: 2, per: 24h}
  quiet_hours: {start: "21:00", end: "08:00"}   # omit for none
  max_delay: 6h
  holdout_percent: 0
  holdout_salt: nudge
  attribution_window: 72h
segments: {core_min_orders: 5, core_min_monetary: 500, dormant_after: 30d, churned_after: 90d}
offers:                          # optional: trigger -> segment -> offer code ("default" as fallback)
  cart_abandonment: {default: FREESHIP, dormant: COMEBACK10}
"""  # noqa: E501 - the contract's text, verbatim

H, D = timedelta(hours=1), timedelta(days=1)


def test_an_empty_file_gives_the_contract_defaults() -> None:
    for text in ("", "   \n", "# only a comment\n"):
        rules = parse_rules(text)
        assert rules == Rules()
    t = Rules().triggers
    assert (t.cart_abandonment.stages, t.cart_abandonment.cooldown) == ((H, 24 * H), 24 * H)
    assert (t.cart_abandonment.min_cart_value, t.cart_abandonment.priority) == (0, 100)
    assert (t.browse_abandonment.stages, t.browse_abandonment.priority) == ((2 * H,), 50)
    assert (t.replenishment.fire_at_fraction, t.replenishment.min_purchases) == (0.9, 2)
    assert t.replenishment.learn_from_history and t.replenishment.products == {}
    assert (t.first_purchase_followup.stages, t.first_purchase_followup.priority) == ((3 * D,), 60)
    assert (t.lapsing.factor, t.lapsing.min_orders, t.lapsing.priority) == (1.5, 3, 70)
    assert t.dormancy.stages == (30 * D, 60 * D, 90 * D) and t.dormancy.audience == "customers"
    policy = Rules().contact_policy
    assert (policy.frequency_cap.max, policy.frequency_cap.per) == (2, 24 * H)
    assert policy.quiet_hours is None  # "omit for none"
    assert (policy.max_delay, policy.attribution_window) == (6 * H, 72 * H)
    assert (policy.holdout_percent, policy.holdout_salt) == (0, "nudge")
    segments = Rules().segments
    assert (segments.core_min_orders, segments.core_min_monetary) == (5, 500)
    assert (segments.dormant_after, segments.churned_after) == (30 * D, 90 * D)
    assert Rules().default_timezone == "UTC"


def test_the_contract_example_parses() -> None:
    rules = parse_rules(CONTRACT_EXAMPLE)
    assert rules.default_timezone == "Asia/Shanghai"
    assert rules.contact_policy.quiet_hours.start == time(21)
    assert rules.contact_policy.quiet_hours.end == time(8)
    assert rules.offers.offer("cart_abandonment", "dormant") == "COMEBACK10"
    assert rules.offers.offer("cart_abandonment", "core") == "FREESHIP"
    assert rules.offers.offer("lapsing", "core") is None


def test_the_shipped_example_file_is_the_contract_example() -> None:
    assert load_rules(ROOT / "rules.example.yaml") == parse_rules(CONTRACT_EXAMPLE)


def test_version_label_is_the_version_plus_a_hash_of_the_effective_rules() -> None:
    label = parse_rules("version: 7").version_label
    assert label.startswith("7+") and len(label) == len("7+") + 8
    same = parse_rules("version: 7\ncontact_policy: {max_delay: 6h}\n# a comment")
    assert same.version_label == label  # same meaning, same label
    assert parse_rules("version: 7\ncontact_policy: {max_delay: 5h}").version_label != label
    assert parse_rules("version: v2-beta").version_label.startswith("v2-beta+")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (90, timedelta(seconds=90)),
        (0, timedelta(0)),
        ("3600", timedelta(hours=1)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(minutes=90)),
        ("3d", timedelta(days=3)),
        ("2w", timedelta(days=14)),
        ("1d12h", timedelta(hours=36)),
        ("1.5h", timedelta(minutes=90)),
        (" 10m ", timedelta(minutes=10)),
        ("0.0015s", timedelta(milliseconds=2)),  # to the ms, half to even
        ("0.0025s", timedelta(milliseconds=2)),
        ("3650d", timedelta(days=3650)),  # the maximum
        (315_360_000, timedelta(days=3650)),
        ("3649d23h59m59.999s", timedelta(days=3650, milliseconds=-1)),
        ("1.000000000000000000000000000001s", timedelta(seconds=1)),  # exact, not float sums
        ("0000000000000000000000000000000000000000001s", timedelta(seconds=1)),
    ],
)
def test_durations(value: int | str, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "value",
    [-1, "1y", "h", "", "1 h", "1H", "-5m", "1h-5m", 1.5, True, None, "\u0663h", "\u0663"],
)
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        "3650d0.001s",
        315_360_001,
        "142857143w",  # was an OverflowError
        99999999999999999999,
        "99999999999999999999",
        "9" * 5000 + "s",  # more digits than int() reads
        "72057594037929s",
        timedelta(days=3651),
    ],
)
def test_durations_longer_than_ten_years_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="at most 3650d"):
        parse_duration(value)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.timedeltas(min_value=timedelta(0), max_value=MAX_DURATION))
def test_format_duration_reads_back_exactly(duration: timedelta) -> None:
    duration = timedelta(milliseconds=duration // timedelta(milliseconds=1))
    assert parse_duration(format_duration(duration)) == duration


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        (
            "triggers: {cart_abandonment: {stages: [1h, -5]}}",
            "triggers.cart_abandonment.stages[1]",
            "negative",
        ),
        (
            "triggers: {cart_abandonment: {stages: [1h, 0]}}",
            "triggers.cart_abandonment.stages[1]",
            "longer than zero",
        ),
        (
            "triggers: {cart_abandonment: {stages: [2h, 1h]}}",
            "triggers.cart_abandonment.stages",
            "increasing",
        ),
        (
            "triggers: {cart_abandonment: {stages: []}}",
            "triggers.cart_abandonment.stages",
            "at least 1",
        ),
        (
            "triggers: {dormancy: {stages: [30d, 1y]}}",
            "triggers.dormancy.stages[1]",
            "not a duration",
        ),
        ("triggers: {dormancy: {audience: everyone}}", "triggers.dormancy.audience", "customers"),
        (
            "triggers: {cart_abandonment: {cooldwn: 1h}}",
            "triggers.cart_abandonment.cooldwn",
            "unknown key",
        ),
        ("triggers: {cart_abandon: {}}", "triggers.cart_abandon", "unknown key"),
        (
            "triggers: {cart_abandonment: {min_cart_value: -1}}",
            "triggers.cart_abandonment.min_cart_value",
            "greater than or equal",
        ),
        (
            "triggers: {replenishment: {fire_at_fraction: 0}}",
            "triggers.replenishment.fire_at_fraction",
            "greater than",
        ),
        (
            "triggers: {replenishment: {min_purchases: 1}}",
            "triggers.replenishment.min_purchases",
            "greater than or equal to 2",
        ),
        (
            "triggers: {replenishment: {products: {sku-1: soon}}}",
            "triggers.replenishment.products.sku-1",
            "not a duration",
        ),
        (
            "triggers: {lapsing: {min_orders: 1}}",
            "triggers.lapsing.min_orders",
            "greater than or equal to 2",
        ),
        ("triggers: {lapsing: {enabled: maybe}}", "triggers.lapsing.enabled", "boolean"),
        (
            "contact_policy: {frequency_cap: {max: 0}}",
            "contact_policy.frequency_cap.max",
            "greater than or equal to 1",
        ),
        (
            "contact_policy: {frequency_cap: {per: 0}}",
            "contact_policy.frequency_cap.per",
            "longer than zero",
        ),
        (
            "contact_policy: {quiet_hours: {start: '25:00', end: '08:00'}}",
            "contact_policy.quiet_hours.start",
            "HH:MM",
        ),
        (
            "contact_policy: {quiet_hours: {start: '21:00'}}",
            "contact_policy.quiet_hours.end",
            "required",
        ),
        (
            "contact_policy: {quiet_hours: {start: '08:00', end: '08:00'}}",
            "contact_policy.quiet_hours",
            "differ",
        ),
        (
            "contact_policy: {holdout_percent: 101}",
            "contact_policy.holdout_percent",
            "less than or equal to 100",
        ),
        ("contact_policy: {max_delay: 1.5}", "contact_policy.max_delay", "not a duration"),
        ("segments: {dormant_after: 100d}", "segments", "churned_after must be longer"),
        ("offers: {cart_abandonment: {dormnt: X}}", "offers.cart_abandonment.dormnt", "'default'"),
        ("offers: {nothing: {default: X}}", "offers.nothing", "unknown key"),
        ("default_timezone: Mars/Olympus", "default_timezone", "time zone"),
        ("colour: blue", "colour", "unknown key"),
        # Bounds: every rules file that loads is one the engine can run.
        *(
            (text, path, "at most 3650d")
            for text, path in (
                ("triggers: {dormancy: {stages: [30d, 3000000d]}}", "triggers.dormancy.stages[1]"),
                (
                    "triggers: {cart_abandonment: {cooldown: 3651d}}",
                    "triggers.cart_abandonment.cooldown",
                ),
                (
                    "triggers: {replenishment: {products: {p: 500000d}}}",
                    "triggers.replenishment.products.p",
                ),
                (
                    "triggers: {replenishment: {categories: {c: 522w}}}",
                    "triggers.replenishment.categories.c",
                ),
                (
                    "contact_policy: {frequency_cap: {per: 3651d}}",
                    "contact_policy.frequency_cap.per",
                ),
                ("contact_policy: {max_delay: 99999999999999999999}", "contact_policy.max_delay"),
                (
                    "contact_policy: {attribution_window: 3651d}",
                    "contact_policy.attribution_window",
                ),
                ("segments: {dormant_after: 142857143w}", "segments.dormant_after"),
                ("segments: {churned_after: 3651d}", "segments.churned_after"),
            )
        ),
        *(
            (text, path, "finite")
            for text, path in (
                ("triggers: {lapsing: {factor: .inf}}", "triggers.lapsing.factor"),
                ("triggers: {lapsing: {factor: .nan}}", "triggers.lapsing.factor"),
                (
                    "triggers: {replenishment: {fire_at_fraction: .nan}}",
                    "triggers.replenishment.fire_at_fraction",
                ),
                (
                    "triggers: {cart_abandonment: {min_cart_value: .inf}}",
                    "triggers.cart_abandonment.min_cart_value",
                ),
                ("contact_policy: {holdout_percent: .nan}", "contact_policy.holdout_percent"),
                ("segments: {core_min_monetary: .inf}", "segments.core_min_monetary"),
            )
        ),
        (
            "triggers: {lapsing: {factor: 1e300}}",
            "triggers.lapsing.factor",
            "less than or equal to 100",
        ),
        (
            "triggers: {lapsing: {factor: 100.5}}",
            "triggers.lapsing.factor",
            "less than or equal to 100",
        ),
        (
            "triggers: {replenishment: {fire_at_fraction: 10.5}}",
            "triggers.replenishment.fire_at_fraction",
            "less than or equal to 10",
        ),
        (
            "triggers: {lapsing: {priority: 2000000000}}",
            "triggers.lapsing.priority",
            "less than or equal",
        ),
        (
            "triggers: {dormancy: {priority: -2000000000}}",
            "triggers.dormancy.priority",
            "greater than or equal",
        ),
        (
            "contact_policy: {frequency_cap: {max: 99999999999999999999999}}",
            "contact_policy.frequency_cap.max",
            "less than",
        ),
        ("version: 99999999999999999999", "version", "64 bits"),
        ('version: "1\\ntriggers: {dormancy: {enabled: false}}"', "version", "control"),
        ('version: "\\0"', "version", "control"),
        ('version: "v\\u2028x"', "version", "line-separator"),
        ('version: "v\\u202ex"', "version", "format"),
        ('version: ""', "version", "1..64"),
        ("version: " + "v" * 65, "version", "1..64"),
        ("version: 1.5", "version", "an integer or a string"),
        ("version: true", "version", "an integer or a string"),
        ("version: [1]", "version", "an integer or a string"),
        (
            "triggers: {replenishment: {products: {1: 1d, '1': 2d}}}",
            "triggers.replenishment.products",
            "duplicate key '1'",
        ),
    ],
)
def test_errors_name_the_key_path(text: str, path: str, reason: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(text)
    assert any(p == path and reason in r for p, r in caught.value.errors), caught.value.errors


def test_all_errors_are_reported_at_once() -> None:
    text = (
        "triggers: {lapsing: {factor: 0}, dormancy: {audience: x}}\nsegments: {core_min_orders: 0}"
    )
    with pytest.raises(RulesError) as caught:
        parse_rules(text)
    assert [path for path, _ in caught.value.errors] == [
        "triggers.lapsing.factor",
        "triggers.dormancy.audience",
        "segments.core_min_orders",
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a: [", "not valid YAML: expected the node content"),
        ("- just\n- a list", "must be a mapping"),
        ("triggers:\n  lapsing: {}\n  lapsing: {}", "duplicate key 'lapsing'"),
        # Whatever the input, parse_rules raises RulesError and nothing else.
        ("? [a, b]\n: 1\n", "a key must be a scalar"),  # was a TypeError
        ("{[1]: 2}", "a key must be a scalar"),
        ("triggers: {replenishment: {products: {[1]: 1d}}}", "a key must be a scalar"),
        ("? {a: 1}\n: 1\n", "a key must be a scalar"),
        ('holdout_salt_typo: "\\ud800"', "lone surrogate"),
        ('offers: {cart_abandonment: {default: "\\udc00"}}', "lone surrogate"),
        ("version: " + "9" * 5000, "not valid YAML"),  # int() refuses > 4300 digits
        ("[" * 5000, "not valid YAML"),
        ("a: " + "[" * 3000 + "]" * 3000, "nested too deeply"),
        ("a: &a [*a]", "recursive"),
    ],
)
def test_unreadable_files_are_refused(text: str, reason: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(text)
    ((path, message),) = caught.value.errors
    assert path == "" and reason in message


def test_the_bounds_themselves_are_accepted() -> None:
    rules = parse_rules(
        "version: 9223372036854775807\n"
        "triggers:\n"
        "  dormancy: {stages: [3650d], priority: -1000000000}\n"
        "  lapsing: {factor: 100, priority: 1000000000}\n"
        "  replenishment: {fire_at_fraction: 10, products: {p: 3650d}}\n"
        "contact_policy: {max_delay: 3650d, attribution_window: 3650d}\n"
        "segments: {dormant_after: 3649d, churned_after: 3650d}\n"
    )
    assert rules.triggers.dormancy.stages == (MAX_DURATION,)
    assert parse_rules(dump_rules(rules)) == rules


@pytest.mark.parametrize(
    "text",
    [
        "triggers: {replenishment: {categories: {x: 3649d23h59m59.999s}}}",
        "triggers: {replenishment: {categories: {x: 315359999}}}",
        "contact_policy: {max_delay: 1.0005s}",  # rounds to 1.0s (half to even), prints 1s
        "version: 'v2 beta (été) #3'",
        "version: '1'",  # a string stays a string
        "triggers: {replenishment: {products: {12345: 14d, true: 1d}}}",
    ],
)
def test_rules_check_output_reads_back_to_equal_rules(text: str) -> None:
    rules = parse_rules(text)
    dumped = dump_rules(rules)
    assert parse_rules(dumped) == rules
    assert dumped.splitlines()[0] == f"# effective rules; rules_version: {rules.version_label}"


def test_a_version_built_in_code_is_escaped_in_the_header() -> None:
    rules = Rules.model_construct(**{**dict(Rules()), "version": "1\nx: 2"})
    rules.model_post_init(None)
    header = dump_rules(rules).splitlines()[0]
    assert header == "# effective rules; rules_version: " + rules.version_label.replace("\n", "\\n")


def test_unquoted_times_of_day_stay_times_not_base_60_numbers() -> None:
    rules = parse_rules("contact_policy: {quiet_hours: {start: 21:00, end: 7:30}}")
    assert rules.contact_policy.quiet_hours.start == time(21)
    assert rules.contact_policy.quiet_hours.end == time(7, 30)


def test_numeric_product_ids_in_the_catalogue_become_strings() -> None:
    rules = parse_rules("triggers: {replenishment: {products: {12345: 14d}}}")
    assert rules.triggers.replenishment.products == {"12345": timedelta(days=14)}


def test_the_effective_rules_dump_reads_back_to_the_same_rules() -> None:
    for rules in (
        Rules(),
        parse_rules(CONTRACT_EXAMPLE),
        parse_rules("triggers: {lapsing: {cooldown: 90s}}"),
    ):
        dumped = dump_rules(rules)
        assert parse_rules(dumped) == rules
        assert rules.version_label in dumped


def test_load_rules() -> None:
    assert load_rules(None) == Rules()
    with pytest.raises(RulesError, match="cannot read"):
        load_rules("/nonexistent/rules.yaml")


def run_nudge(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*NUDGE, *args], input=stdin, capture_output=True, cwd=ROOT, timeout=60, check=False
    )


def test_rules_check_prints_the_effective_rules() -> None:
    done = run_nudge("rules", "check", str(ROOT / "rules.example.yaml"))
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert out.startswith("# effective rules; rules_version: 1+")
    assert parse_rules(out) == load_rules(ROOT / "rules.example.yaml")
    assert "learn_from_history: true" in out  # defaults are filled in


def test_rules_check_prints_each_error_with_its_key_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "triggers:\n  cart_abandonment: {stages: [1h, nope]}\ncontact_policy: {max_delay: -1}\n"
    )
    done = run_nudge("rules", "check", str(bad))
    assert done.returncode == 1
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert lines[0].startswith(
        f"{bad}:2: triggers.cart_abandonment.stages[1]: not a duration: 'nope'"
    )
    assert lines[1].startswith(f"{bad}:3: contact_policy.max_delay: a duration cannot be negative")
    # The last line points at the commented example, shipped with the package.
    example = ROOT / "triggers" / "rules.example.yaml"
    assert lines[2] == f"{bad}: 2 error(s); rules refused (every key, commented: {example})"
    assert example.read_bytes() == (ROOT / "rules.example.yaml").read_bytes()


MULTI_LINE = """\
version: 3
triggers:
  cart_abandonment:
    stages:
      - 1h
      - nope
    cooldwn: 2h
  browse_abandonmnt: {}
contact_policy:
  quiet_hours:
    start: "21:00"
  frequency_cap: {max: 0}
colour: blue
"""


def test_errors_carry_the_line_and_suggest_the_key_meant() -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(MULTI_LINE, "rules.yaml")
    assert str(caught.value).splitlines() == [
        "rules.yaml:6: triggers.cart_abandonment.stages[1]: not a duration: 'nope' (use integer"
        " seconds or number+unit parts with units s m h d w, e.g. 90s, 1h30m, 3d)",
        "rules.yaml:7: triggers.cart_abandonment.cooldwn: unknown key (did you mean `cooldown`?)",
        "rules.yaml:8: triggers.browse_abandonmnt: unknown key"
        " (did you mean `browse_abandonment`?)",
        "rules.yaml:12: contact_policy.frequency_cap.max: Input should be greater than or equal"
        " to 1",
        # a missing key: the line of the mapping that lacks it
        "rules.yaml:10: contact_policy.quiet_hours.end: Field required",
        "rules.yaml:13: colour: unknown key (known keys: version, default_timezone, triggers,"
        " contact_policy, segments, offers, channels, retention, erasure_memory)",
    ]
    assert caught.value.lines == [6, 7, 8, 12, 10, 13]
    assert [path for path, _ in caught.value.errors][:2] == [
        "triggers.cart_abandonment.stages[1]",
        "triggers.cart_abandonment.cooldwn",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "version: 1\ntriggers:\n  lapsing: {}\n  lapsing: {}\n",
            "line 4: duplicate key 'lapsing'",
        ),
        ("a: 1\nb: [\n", "line 3, column 1: not valid YAML"),
        ("version: 1\n? [a]\n: 1\n", "line 2: a key must be a scalar"),
        ("version: 1\nx: &a [*a]\n", "line 2: a recursive alias"),
        ('version: 1\n\nholdout: "\\ud800"\n', "line 3: a string holds a lone surrogate"),
        ("- a list\n", "line 1: the rules file must be a mapping"),
        ("offers: {lapsing: {default: !!python/object:os.system x}}", "line 1: not valid YAML"),
    ],
)
def test_file_level_errors_carry_the_line(text: str, message: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(text)
    assert str(caught.value).startswith(message)


def test_load_rules_names_the_file_in_each_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("triggers:\n  lapsing:\n    factr: 2\n")
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert str(caught.value) == (
        f"{path}:3: triggers.lapsing.factr: unknown key (did you mean `factor`?)"
    )


def test_a_yaml_syntax_error_is_named_by_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("triggers:\n  cart_abandonment:\n    stages: [1h\n  lapsing: {}\n")
    done = run_nudge("rules", "check", str(path))
    assert done.returncode == 1
    assert done.stderr.decode().splitlines() == [
        f"{path}:4:10: not valid YAML: expected ',' or ']', but got ':'",
        f"{path}: 1 error(s); rules refused (every key, commented:"
        f" {ROOT / 'triggers' / 'rules.example.yaml'})",
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "triggers: {cart_abandonment: {stages: 1h}}",
            "expected a list of durations like [1h] or [1h, 24h], got '1h'",
        ),
        (
            "triggers: {custom: {x: {when: {type: search}, stages: 3d}}}",
            "expected a list of durations like [1h] or [1h, 24h], got '3d'",
        ),
        (
            "triggers: {custom: {x: {when: {type: search}, unless: {type: search}}}}",
            "expected a list of items, got a dict",
        ),
        (
            "triggers: {custom: {x: {when: order_placed}}}",
            "expected a mapping of keys (key: value), got 'order_placed'",
        ),
    ],
)
def test_a_value_of_the_wrong_shape_says_what_is_expected(text: str, reason: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(text)
    ((_, message),) = caught.value.errors
    assert message == reason


def test_a_misspelt_key_in_a_custom_trigger_gets_the_key_meant() -> None:
    text = (
        "triggers:\n"
        "  custom:\n"
        "    socks:\n"
        "      when: {type: order_placed, categroy: [running_shoes]}\n"
        "      unless: [{type: order_placed, category: [socks], min_totl: 5}]\n"
        "      stages: [3d]\n"
        "      cooldwn: 1h\n"
    )
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "rules.yaml")
    assert str(caught.value).splitlines() == [
        "rules.yaml:4: triggers.custom.socks.when.categroy: unknown key (did you mean `category`?)",
        "rules.yaml:5: triggers.custom.socks.unless[0].min_totl: unknown key (did you mean"
        " `min_total`?)",
        "rules.yaml:7: triggers.custom.socks.cooldwn: unknown key (did you mean `cooldown`?)",
    ]


def test_custom_triggers_default_to_the_built_in_triggers_24h_cooldown() -> None:
    rules = parse_rules("triggers: {custom: {mug: {when: {type: order_placed}}}}")
    assert rules.trigger("mug").cooldown == timedelta(hours=24)
    assert rules.trigger("cart_abandonment").cooldown == timedelta(hours=24)
    assert rules.trigger("browse_abandonment").cooldown == timedelta(hours=24)
    none = parse_rules("triggers: {custom: {mug: {when: {type: order_placed}, cooldown: 0s}}}")
    assert none.trigger("mug").cooldown == timedelta(0)
    # Said where a marketer writes one: the example file's custom section.
    example = (ROOT / "rules.example.yaml").read_text()
    assert "# cooldown defaults to 24h, as cart and browse abandonment's" in example


def test_yaml_1_2_reads_words_and_times_as_strings() -> None:
    # YAML 1.1 would read `on`/`yes` as booleans and 21:00 as 1260; YAML 1.2 does not.
    rules = parse_rules(
        "version: on\ncontact_policy: {quiet_hours: {start: 21:00, end: 08:00}, holdout_salt: yes}"
    )
    assert rules.version == "on"
    assert rules.contact_policy.holdout_salt == "yes"
    assert rules.contact_policy.quiet_hours is not None
    assert rules.contact_policy.quiet_hours.start == time(21)
    assert rules.contact_policy.quiet_hours.end == time(8)


def test_rules_check_on_a_missing_file_fails() -> None:
    done = run_nudge("rules", "check", "/nonexistent/rules.yaml")
    assert done.returncode == 1
    assert b"cannot read" in done.stderr
