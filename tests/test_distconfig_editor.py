"""The RKE2/k3s configuration editor (cisfix.editors.distconfig): merge rules, k3s value rules, where a
plan puts each change, byte-faithful text edits, refusals, real configuration files, and a property test
(random files and operations: plan + edit give the effective flags asked for)."""
from __future__ import annotations

import csv
import difflib
import posixpath
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from cisfix.editors import distconfig as dc
from cisfix.editors.distconfig import AppendItem, ArgEntry, RemoveItem, ReplaceItem
from cisfix.errors import EditError, InputError
from cisfix.plan import AddFlagItem, RemoveFlag, RemoveFlagItem, SetFlag

DATA = Path(__file__).parent / "data" / "distconfig"
CONFIG = "/etc/rancher/k3s/config.yaml"
DROPINS = CONFIG + ".d"
OWNED = DROPINS + "/90-cisfix.yaml"
API = "kube-apiserver-arg"
K3S_API_DEFAULTS = {"enable-admission-plugins": "NodeRestriction", "anonymous-auth": "false", "profiling": "false"}


def dropin(name: str) -> str:
    return posixpath.join(DROPINS, name)


def ordered(texts: Dict[str, str]) -> List[Tuple[str, str]]:
    """config.yaml first, then the drop-ins in the distribution's order."""
    names = dc.dropin_order(posixpath.basename(p) for p in texts if p != CONFIG)
    return ([(CONFIG, texts[CONFIG])] if CONFIG in texts else []) + [(dropin(n), texts[dropin(n)]) for n in names]


def run(texts: Dict[str, str], op, key: str = API, rules: str = "replace", defaults=None, leading=()):
    """Plan `op`, apply it, and return (plan, new texts, reloaded configuration)."""
    config = dc.load(ordered(texts))
    plan = config.plan(key, op, OWNED, rules, defaults or {}, leading)
    new = dict(texts)
    for path, edited in config.apply(plan).items():
        new[path] = edited.text
    return plan, new, dc.load(ordered(new))


def changed_lines(old: str, new: str) -> List[str]:
    diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0))[2:]  # no headers
    return [line for line in diff if not line.startswith("@@")]


# --- merge rules (k3s pkg/configfilearg/parser.go) ---------------------------------------------------


class TestMergeRules:
    def test_a_later_plain_key_replaces_the_list(self):
        config = dc.load([(CONFIG, f"{API}:\n  - a=1\n  - b=2\n"), (dropin("10-x.yaml"), f"{API}:\n  - c=3\n")])
        assert [(e.flag, e.value) for e in config.entries(API)] == [("c", "3")]

    def test_a_plus_key_appends_to_the_earlier_files(self):
        config = dc.load([(CONFIG, f"{API}:\n  - a=1\n"), (dropin("10-x.yaml"), f"{API}+:\n  - b=2\n")])
        assert [e.flag for e in config.entries(API)] == ["a", "b"]

    def test_a_plus_key_in_the_first_file_sets_the_list(self):
        config = dc.load([(dropin("10-x.yaml"), f"{API}+: [a=1]\n")])
        assert [e.flag for e in config.entries(API)] == ["a"]

    def test_plain_and_plus_keys_in_one_file_apply_in_order(self):
        config = dc.load([(CONFIG, f"{API}: [a=1]\n"),
                          (dropin("10-x.yaml"), f"{API}: [b=2]\n{API}+: [c=3]\n")])
        assert [e.flag for e in config.entries(API)] == ["b", "c"]

    def test_a_string_value_is_one_item(self):
        config = dc.load([(CONFIG, f'kubelet-arg: "cloud-provider=external"\n')])
        assert config.entries("kubelet-arg") == [ArgEntry("cloud-provider", "external", "=", CONFIG, 1)]

    def test_entries_name_their_file_and_line(self):
        config = dc.load([(CONFIG, f"# header\n{API}:\n  - a=1\n\n  - --b=2\n")])
        assert config.entries(API) == [ArgEntry("a", "1", "=", CONFIG, 3), ArgEntry("b", "2", "=", CONFIG, 5)]

    def test_a_plain_setting_takes_the_last_files_value(self):
        config = dc.load([(CONFIG, "profile: cis-1.23\ntoken: x\n"), (dropin("50-a.yaml"), 'profile: "cis"\n')])
        assert config.value("profile") == "cis"
        assert config.value("token") == "x"
        assert config.value("selinux") is None

    def test_dropin_order_is_bytewise_and_yaml_only(self):
        names = ["b.yaml", "a.YML", "10-x.yaml", "9-y.yml", "B.yaml", "notes.txt", "c.yaml.bak", "d.Yaml"]
        assert dc.dropin_order(names) == ["10-x.yaml", "9-y.yml", "B.yaml", "a.YML", "b.yaml", "d.Yaml"]

    def test_empty_and_comment_only_files_contribute_nothing(self):
        config = dc.load([(CONFIG, f"{API}: [a=1]\n"), (dropin("10-x.yaml"), ""), (dropin("20-y.yaml"), "# nothing\n")])
        assert [e.flag for e in config.entries(API)] == ["a"]


# --- value rules (k3s pkg/util/args.go GetArgs) ------------------------------------------------------


class TestK3sValueRules:
    def flags(self, items: str, defaults=K3S_API_DEFAULTS) -> Dict[str, Optional[str]]:
        return dc.load([(CONFIG, f"{API}: [{items}]\n")]).flags(API, defaults, "k3s")[0]

    def test_plus_appends_to_the_default(self):
        assert self.flags("enable-admission-plugins+=EventRateLimit")["enable-admission-plugins"] == \
            "NodeRestriction,EventRateLimit"

    def test_minus_prepends_to_the_default(self):
        assert self.flags("enable-admission-plugins-=EventRateLimit")["enable-admission-plugins"] == \
            "EventRateLimit,NodeRestriction"

    def test_plain_replaces_the_default(self):
        assert self.flags("enable-admission-plugins=EventRateLimit")["enable-admission-plugins"] == "EventRateLimit"

    def test_several_appends_accumulate_after_the_default(self):
        got = self.flags("enable-admission-plugins+=A, enable-admission-plugins+=B, enable-admission-plugins-=C")
        assert got["enable-admission-plugins"] == "C,NodeRestriction,A,B"

    def test_the_default_is_consumed_by_the_first_item(self):
        got = self.flags("enable-admission-plugins=A, enable-admission-plugins+=B")
        assert got["enable-admission-plugins"] == "A,B"

    def test_defaults_without_items_stay(self):
        assert self.flags("audit-log-maxage=30")["anonymous-auth"] == "false"

    def test_the_deciding_item_is_reported(self):
        config = dc.load([(CONFIG, f"{API}: [a=1, a=2]\n")])
        assert config.flags(API, {}, "k3s")[1]["a"] == ArgEntry("a", "2", "=", CONFIG, 1)

    def test_args_match_getargs(self):
        # k3s pkg/util/args_test.go, "Multiple args with defaults and prefix" and "... and suffix"
        config = dc.load([(CONFIG, f"{API}: [--ccc=C, --bbb-=DD]\n")])
        assert config.args(API, {"aaa": "A", "bbb": "B"}) == [("aaa", "A"), ("bbb", "DD"), ("bbb", "B"), ("ccc", "C")]
        config = dc.load([(CONFIG, f"{API}: [--ccc=C, --bbb+=DD, anonymous-auth]\n")])
        assert config.args(API, {"aaa": "A", "bbb": "B"}) == \
            [("aaa", "A"), ("anonymous-auth", "true"), ("bbb", "B"), ("bbb", "DD"), ("ccc", "C")]

    def test_a_bare_item_has_no_value(self):
        assert self.flags("anonymous-auth")["anonymous-auth"] is None

    def test_replace_rules_take_the_last_item_and_treat_plus_literally(self):
        config = dc.load([(CONFIG, "etcd-arg: [quota-backend-bytes=1, quota-backend-bytes=2, snapshot-count+=5]\n")])
        values, decided = config.flags("etcd-arg")
        assert values == {"quota-backend-bytes": "2", "snapshot-count+": "5"}
        assert decided["quota-backend-bytes"].value == "2"


class TestDistributionItems:
    """RKE2 puts `enable-admission-plugins=NodeRestriction` before the apiserver items of the files
    (rke2 pkg/cli/defaults/defaults.go): an item, so it consumes k3s's default and survives a plain key."""

    LEADING = ("enable-admission-plugins=NodeRestriction",)
    PLUGINS = "enable-admission-plugins"

    def test_a_plain_item_no_longer_drops_noderestriction(self):
        config = dc.load([(CONFIG, f"{API}: [{self.PLUGINS}=AlwaysPullImages]\n")])
        assert config.flags(API, K3S_API_DEFAULTS, "k3s", self.LEADING)[0][self.PLUGINS] == \
            "NodeRestriction,AlwaysPullImages"
        assert [a for a in config.args(API, K3S_API_DEFAULTS, self.LEADING) if a[0] == self.PLUGINS] == \
            [(self.PLUGINS, "NodeRestriction"), (self.PLUGINS, "AlwaysPullImages")]
        # on k3s, without the leading item, the same file drops it
        assert config.flags(API, K3S_API_DEFAULTS, "k3s")[0][self.PLUGINS] == "AlwaysPullImages"

    def test_a_later_plain_key_keeps_the_distributions_items(self):
        config = dc.load([(CONFIG, f"{API}: [a=1]\n"), (dropin("10-x.yaml"), f"{API}: [b=2]\n")])
        values, decided = config.flags(API, {}, "k3s", self.LEADING)
        assert values == {self.PLUGINS: "NodeRestriction", "b": "2"}
        assert decided[self.PLUGINS].file == dc.BUILTIN

    def test_adding_a_plugin_appends(self):
        plan, _, after = run({CONFIG: ""}, AddFlagItem(self.PLUGINS, "EventRateLimit"), rules="k3s",
                             defaults=K3S_API_DEFAULTS, leading=self.LEADING)
        assert plan == [(OWNED, (AppendItem(API, f"{self.PLUGINS}+=EventRateLimit", True),))]
        assert after.flags(API, K3S_API_DEFAULTS, "k3s", self.LEADING)[0][self.PLUGINS] == \
            "NodeRestriction,EventRateLimit"

    def test_setting_the_list_writes_what_the_distribution_does_not_pass(self):
        plan, _, after = run({CONFIG: ""}, SetFlag(self.PLUGINS, "NodeRestriction,EventRateLimit"), rules="k3s",
                             defaults=K3S_API_DEFAULTS, leading=self.LEADING)
        assert plan == [(OWNED, (AppendItem(API, f"{self.PLUGINS}=EventRateLimit", True),))]
        assert after.flags(API, K3S_API_DEFAULTS, "k3s", self.LEADING)[0][self.PLUGINS] == \
            "NodeRestriction,EventRateLimit"

    @pytest.mark.parametrize("op", [SetFlag("enable-admission-plugins", "EventRateLimit"),
                                    RemoveFlag("enable-admission-plugins"),
                                    RemoveFlagItem("enable-admission-plugins", "NodeRestriction")])
    def test_what_the_distributions_items_contradict_is_refused(self, op):
        texts = {CONFIG: f"{API}: [{self.PLUGINS}+=EventRateLimit]\n"}
        with pytest.raises(EditError, match="distribution itself passes --enable-admission-plugins=NodeRestriction"):
            run(texts, op, rules="k3s", defaults=K3S_API_DEFAULTS, leading=self.LEADING)

    def test_list_flags_accumulate_repeated_items_and_others_take_the_last(self):
        config = dc.load([(CONFIG, f"{API}: [authorization-mode=Node, audit-log-maxage=30]\n"),
                          (dropin("10-x.yaml"), f"{API}+: [authorization-mode=RBAC, audit-log-maxage=60]\n")])
        values = config.flags(API, {}, "k3s")[0]
        assert (values["authorization-mode"], values["audit-log-maxage"]) == ("Node,RBAC", "60")


# --- plan: where each change goes --------------------------------------------------------------------


class TestPlanTargets:
    def test_a_flag_decided_in_the_operators_file_is_edited_in_place(self):
        texts = {CONFIG: f"# mine\n{API}:\n  - \"request-timeout=300s\"\n  - audit-log-maxage=30\n"}
        plan, new, after = run(texts, SetFlag("request-timeout", "60s"), rules="k3s")
        assert [p for p, _ in plan] == [CONFIG]
        assert changed_lines(texts[CONFIG], new[CONFIG]) == \
            ['-  - "request-timeout=300s"', '+  - "request-timeout=60s"']
        assert after.flags(API, {}, "k3s")[0]["request-timeout"] == "60s"

    def test_a_new_flag_goes_to_the_owned_dropin_which_is_created(self):
        texts = {CONFIG: f"{API}:\n  - audit-log-maxage=30\n"}
        plan, new, after = run(texts, SetFlag("profiling", "false"))
        assert plan == [(OWNED, (AppendItem(API, "profiling=false", True),))]
        assert new[OWNED].startswith("# Written by cisfix")
        assert new[OWNED].endswith(f"{API}+:\n  - profiling=false\n")
        assert new[CONFIG] == texts[CONFIG]
        assert [e.flag for e in after.entries(API)] == ["audit-log-maxage", "profiling"]

    def test_an_existing_owned_dropin_gets_the_item_appended(self):
        texts = {CONFIG: f"{API}: [a=1]\n", OWNED: f"# cisfix\n{API}+:\n  - b=2\n"}
        plan, new, _ = run(texts, SetFlag("c", "3"))
        assert plan == [(OWNED, (AppendItem(API, "c=3", True),))]
        assert new[OWNED] == f"# cisfix\n{API}+:\n  - b=2\n  - c=3\n"

    def test_a_later_file_that_replaces_the_list_receives_the_item(self):
        later = dropin("95-site.yaml")
        texts = {CONFIG: f"{API}: [a=1]\n", later: f"{API}:\n  - z=9\n"}
        plan, new, after = run(texts, SetFlag("c", "3"))
        assert plan == [(later, (AppendItem(API, "c=3", False),))]
        assert OWNED not in new
        assert after.flags(API)[0] == {"z": "9", "c": "3"}

    def test_a_later_file_that_appends_does_not_change_the_target(self):
        later = dropin("95-site.yaml")
        texts = {CONFIG: f"{API}: [a=1]\n", later: f"{API}+:\n  - z=9\n"}
        plan, _, after = run(texts, SetFlag("c", "3"))
        assert [p for p, _ in plan] == [OWNED]
        assert [e.flag for e in after.entries(API)] == ["a", "c", "z"]

    def test_the_owned_dropin_sorts_among_the_others(self):
        early, late = dropin("10-a.yaml"), dropin("95-z.yaml")
        texts = {CONFIG: "", early: f"{API}: [a=1]\n", late: f"{API}+: [z=9]\n"}
        _, new, after = run(texts, SetFlag("m", "5"))
        assert [f.path for f in after.files] == [CONFIG, early, OWNED, late]
        assert [e.flag for e in after.entries(API)] == ["a", "m", "z"]

    def test_a_flag_decided_after_the_owned_dropin_is_edited_there(self):
        late = dropin("95-z.yaml")
        texts = {CONFIG: f"{API}: [a=1]\n", late: f"{API}+: ['b=2']\n"}
        plan, new, _ = run(texts, SetFlag("b", "3"))
        assert plan == [(late, (ReplaceItem(API, 0, "b=2", "b=3", True),))]
        assert new[late] == f"{API}+: ['b=3']\n"

    def test_removal_removes_every_effective_item_of_the_flag(self):
        texts = {CONFIG: f"{API}:\n  - a=1\n  - b=2\n", dropin("10-x.yaml"): f"{API}+:\n  - a=3\n  - c=4\n"}
        plan, new, after = run(texts, RemoveFlag("a"))
        assert {p for p, _ in plan} == {CONFIG, dropin("10-x.yaml")}
        assert new[CONFIG] == f"{API}:\n  - b=2\n"
        assert new[dropin("10-x.yaml")] == f"{API}+:\n  - c=4\n"
        assert "a" not in after.flags(API)[0]

    def test_shadowed_items_are_left_alone(self):
        texts = {CONFIG: f"{API}:\n  - a=1\n", dropin("10-x.yaml"): f"{API}:\n  - a=2\n"}
        plan, new, _ = run(texts, RemoveFlag("a"))
        assert [p for p, _ in plan] == [dropin("10-x.yaml")]
        assert new[CONFIG] == texts[CONFIG]

    def test_a_distribution_default_cannot_be_removed(self):
        with pytest.raises(EditError, match="default"):
            run({CONFIG: ""}, RemoveFlag("anonymous-auth"), rules="k3s", defaults=K3S_API_DEFAULTS)

    def test_add_item_on_k3s_rules_appends_to_the_default(self):
        plan, _, after = run({CONFIG: ""}, AddFlagItem("enable-admission-plugins", "EventRateLimit"),
                             rules="k3s", defaults=K3S_API_DEFAULTS)
        assert plan == [(OWNED, (AppendItem(API, "enable-admission-plugins+=EventRateLimit", True),))]
        flags = after.flags(API, K3S_API_DEFAULTS, "k3s")[0]
        assert flags["enable-admission-plugins"] == "NodeRestriction,EventRateLimit"

    def test_add_item_on_replace_rules_writes_the_whole_value(self):
        defaults = {"enable-admission-plugins": "NodeRestriction"}
        plan, _, _ = run({CONFIG: ""}, AddFlagItem("enable-admission-plugins", "EventRateLimit"), defaults=defaults)
        assert plan == [(OWNED, (AppendItem(API, "enable-admission-plugins=NodeRestriction,EventRateLimit", True),))]

    def test_add_item_extends_the_deciding_item(self):
        texts = {CONFIG: f'{API}:\n  - "enable-admission-plugins=NodeRestriction"\n'}
        _, new, _ = run(texts, AddFlagItem("enable-admission-plugins", "AlwaysPullImages"), rules="k3s")
        assert new[CONFIG] == f'{API}:\n  - "enable-admission-plugins=NodeRestriction,AlwaysPullImages"\n'

    def test_nothing_to_do_gives_an_empty_plan(self):
        texts = {CONFIG: f"{API}: [enable-admission-plugins=NodeRestriction, a=1]\n"}
        config = dc.load(ordered(texts))
        for op in (SetFlag("a", "1"), RemoveFlag("b"), AddFlagItem("enable-admission-plugins", "NodeRestriction"),
                   RemoveFlagItem("enable-admission-plugins", "X"), SetFlag("anonymous-auth", "false")):
            assert config.plan(API, op, OWNED, "k3s", K3S_API_DEFAULTS) == []

    def test_removing_the_last_item_of_a_flag_is_refused(self):
        with pytest.raises(EditError, match="empty"):
            run({CONFIG: f"{API}: [a=x]\n"}, RemoveFlagItem("a", "x"))

    def test_removing_a_default_item_on_k3s_rules_writes_the_rest(self):
        defaults = {"enable-admission-plugins": "NodeRestriction,ServiceAccount"}
        plan, _, after = run({CONFIG: ""}, RemoveFlagItem("enable-admission-plugins", "ServiceAccount"),
                             rules="k3s", defaults=defaults)
        assert plan == [(OWNED, (AppendItem(API, "enable-admission-plugins=NodeRestriction", True),))]
        assert after.flags(API, defaults, "k3s")[0]["enable-admission-plugins"] == "NodeRestriction"

    def test_k3s_set_drops_the_flags_other_items(self):
        texts = {CONFIG: f"{API}:\n  - enable-admission-plugins+=A\n",
                 dropin("10-x.yaml"): f"{API}+:\n  - enable-admission-plugins+=B\n"}
        _, new, after = run(texts, SetFlag("enable-admission-plugins", "C"), rules="k3s", defaults=K3S_API_DEFAULTS)
        assert new[CONFIG] == f"{API}: []\n"
        assert new[dropin("10-x.yaml")] == f"{API}+:\n  - enable-admission-plugins=C\n"
        assert after.flags(API, K3S_API_DEFAULTS, "k3s")[0]["enable-admission-plugins"] == "C"

    def test_a_leading_double_dash_is_kept(self):
        texts = {CONFIG: f"{API}:\n  - --a=1\n"}
        _, new, _ = run(texts, SetFlag("a", "2"))
        assert new[CONFIG] == f"{API}:\n  - --a=2\n"

    def test_several_operations_on_one_flag_are_planned_in_sequence(self):
        texts = {CONFIG: f"{API}:\n  - audit-log-maxage=30\n"}
        config = dc.load(ordered(texts))
        ops = [AddFlagItem("enable-admission-plugins", "AlwaysPullImages"),
               AddFlagItem("enable-admission-plugins", "EventRateLimit"), SetFlag("audit-log-maxage", "60"),
               SetFlag("request-timeout", "60s"), SetFlag("profiling", "false")]
        plan = config.plan_many(API, ops, OWNED, "k3s", K3S_API_DEFAULTS)
        assert [p for p, _ in plan] == [CONFIG, OWNED]
        new = dict(texts)
        for path, edited in config.apply(plan).items():
            new[path] = edited.text
        assert new[CONFIG] == f"{API}:\n  - audit-log-maxage=60\n"
        assert new[OWNED].endswith(f"{API}+:\n  - enable-admission-plugins+=AlwaysPullImages,EventRateLimit\n"
                                   "  - request-timeout=60s\n")
        flags = dc.load(ordered(new)).flags(API, K3S_API_DEFAULTS, "k3s")[0]
        assert flags["enable-admission-plugins"] == "NodeRestriction,AlwaysPullImages,EventRateLimit"

    def test_unknown_rules_are_refused(self):
        with pytest.raises(EditError, match="rules"):
            dc.load([(CONFIG, "")]).plan(API, SetFlag("a", "1"), OWNED, "rke1")


# --- byte-faithful text edits ------------------------------------------------------------------------


class TestByteFaithfulEdits:
    @pytest.mark.parametrize("text, op, expected", [
        # indented block list, quotes kept on the replaced item
        ('k-arg:\n  - "a=1"  # first\n  - b=2\n', ReplaceItem("k-arg", 0, "a=1", "a=9"),
         'k-arg:\n  - "a=9"  # first\n  - b=2\n'),
        # column-0 block list, single quotes kept
        ("k-arg:\n- 'a=1'\n- b=2\n", ReplaceItem("k-arg", 0, "a=1", "a=it's"), "k-arg:\n- 'a=it''s'\n- b=2\n"),
        # appended after the last item, in its prefix and quoting
        ('k-arg:\n    - "a=1"\n# tail comment\nx: 1\n', AppendItem("k-arg", "b=2", False),
         'k-arg:\n    - "a=1"\n    - "b=2"\n# tail comment\nx: 1\n'),
        # a removed item takes its trailing comment with it, the others stay
        ("k-arg:\n  - a=1 # gone\n  # kept\n  - b=2\n", RemoveItem("k-arg", 0, "a=1"), "k-arg:\n  # kept\n  - b=2\n"),
        # the last item of a block list: the key keeps an empty list
        ("k-arg:\n  - a=1\nx: 1\n", RemoveItem("k-arg", 0, "a=1"), "k-arg: []\nx: 1\n"),
        # flow lists
        ("k-arg: [a=1, 'b=2']\n", AppendItem("k-arg", "c=3", False), "k-arg: [a=1, 'b=2', 'c=3']\n"),
        ("k-arg: [a=1, b=2]\n", RemoveItem("k-arg", 0, "a=1"), "k-arg: [b=2]\n"),
        ("k-arg: []\n", AppendItem("k-arg", "x=1,2", False), 'k-arg: ["x=1,2"]\n'),
        # a string value: replaced, grown into a flow list, emptied
        ('k-arg: "a=1"\n', ReplaceItem("k-arg", 0, "a=1", "a=2"), 'k-arg: "a=2"\n'),
        ('k-arg: "a=1" # c\n', AppendItem("k-arg", "b=2", False), 'k-arg: ["a=1", "b=2"] # c\n'),
        ("k-arg: a=1\n", RemoveItem("k-arg", 0, "a=1"), "k-arg: []\n"),
        # a new key at the end, in the dash offset and quoting of the file's lists
        ('x-arg:\n- "a=1"\n', AppendItem("k-arg", "b=2"), 'x-arg:\n- "a=1"\nk-arg+:\n- "b=2"\n'),
        # no final newline stays so
        ("k-arg:\n  - a=1", AppendItem("k-arg", "b=2", False), "k-arg:\n  - a=1\n  - b=2"),
        ("x: 1", AppendItem("k-arg", "b=2"), "x: 1\nk-arg+:\n  - b=2"),
        # CRLF line ends
        ("k-arg:\r\n  - a=1\r\n", AppendItem("k-arg", "b=2", False), "k-arg:\r\n  - a=1\r\n  - b=2\r\n"),
        # a flow mapping as the document
        ("{x: 1}\n", AppendItem("k-arg", "b=2"), "{x: 1, k-arg+: [b=2]}\n"),
        # a document start and comments only
        ("---\n# nothing yet\n", AppendItem("k-arg", "b=2"), "---\n# nothing yet\nk-arg+:\n  - b=2\n"),
    ])
    def test_only_the_touched_item_changes(self, text, op, expected):
        assert dc.edit(text, [op]).text == expected

    def test_a_new_file_says_who_wrote_it(self):
        edited = dc.edit("", [AppendItem(API, "profiling=false")])
        assert edited.text == dc.HEADER + f"{API}+:\n  - profiling=false\n"
        assert edited.notes == (f"added {API}+: [profiling=false]",)

    def test_no_operations_leave_the_text_alone(self):
        text = "# odd   spacing\nk-arg:   [ a=1 ,b=2 ]"
        assert dc.edit(text, []).text == text

    def test_items_are_found_by_their_text_when_earlier_operations_moved_them(self):
        # two plans made on one original text, joined as the engine joins edits of one file
        text = "k-arg:\n  - a=1\n  - b=2\n  - c=3\n"
        ops = [RemoveItem("k-arg", 0, "a=1"), ReplaceItem("k-arg", 2, "c=3", "c=9"), RemoveItem("k-arg", 1, "b=2")]
        assert dc.edit(text, ops).text == "k-arg:\n  - c=9\n"

    def test_among_equal_items_the_one_nearest_the_index_is_taken(self):
        text = "k-arg: [a=1, b=2, a=1]\n"
        assert dc.edit(text, [ReplaceItem("k-arg", 2, "a=1", "a=3")]).text == "k-arg: [a=1, b=2, a=3]\n"

    def test_several_operations_apply_in_order(self):
        text = "k-arg:\n  - a=1\n  - b=2\n  - c=3\n"
        ops = [ReplaceItem("k-arg", 0, "a=1", "a=9"), RemoveItem("k-arg", 2, "c=3"), RemoveItem("k-arg", 1, "b=2"),
               AppendItem("k-arg", "d=4", False)]
        assert dc.edit(text, ops).text == "k-arg:\n  - a=9\n  - d=4\n"


# --- bad input ---------------------------------------------------------------------------------------


class TestBadInput:
    @pytest.mark.parametrize("text, where, reason", [
        ("a: [1\n", ":2", "invalid YAML"),
        ("x: &a [1]\ny: *a\n", ":1", "anchors and aliases"),
        ("- a\n- b\n", ":1", "not a YAML mapping"),
        ("a: 1\n---\nb: 2\n", ":3", "second YAML document"),
        (f"{API}: 5\n", ":1", "string or a list of strings"),
        (f"{API}:\n", ":1", "string or a list of strings"),
        (f"{API}: {{a: 1}}\n", ":1", "string or a list of strings"),
        (f"{API}:\n  - a=1\n  - 8080\n", ":3", "not a string"),
        (f"{API}+:\n  - [a]\n", ":2", "not a string"),
        (f"{API}: [a]\n{API}: [b]\n", ":2", "duplicate key"),
    ])
    def test_load_refuses_with_file_line_and_reason(self, text, where, reason):
        with pytest.raises(InputError) as caught:
            dc.load([(CONFIG, text)], shown=lambda p: "/node" + p)
        assert str(caught.value).startswith(f"/node{CONFIG}{where}")
        assert reason in caught.value.reason

    @pytest.mark.parametrize("text, reason", [
        ("x: &a [1]\ny: *a\n", "anchors"),
        ("k-arg: [a]\nk-arg: [b]\n", "duplicate"),
        ("a: 1\n---\nb: 2\n", "documents"),
        ("k-arg: [a, 5]\n", "not a string"),
        ("k-arg: 5\n", "must be a string or a list of strings"),
        ("k-arg:\n", "is empty"),
        ("- a\n", "not a YAML mapping"),
        ("k-arg: [a\n", "invalid YAML"),
    ])
    def test_edit_refuses_what_it_cannot_edit_safely(self, text, reason):
        with pytest.raises(EditError, match=reason):
            dc.edit(text, [AppendItem("k-arg", "x=1", False)])

    def test_a_missing_item_is_refused(self):
        with pytest.raises(EditError, match="no item 'b'"):
            dc.edit("k-arg: [a]\n", [RemoveItem("k-arg", 3, "b")])
        with pytest.raises(EditError, match="not in the file"):
            dc.edit("x: 1\n", [ReplaceItem("k-arg", 0, "a", "b")])


# --- real configuration files ------------------------------------------------------------------------


def _sources() -> List[Dict[str, str]]:
    with open(DATA / "SOURCES.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


REAL = sorted(p.name for p in DATA.glob("*.yaml"))


def _arg_keys(config: dc.DistConfig) -> List[str]:
    keys = []
    for f in config.files:
        data = YAML(typ="safe").load(f.text) or {}
        keys += [k.rstrip("+") for k in data if k.rstrip("+").endswith("-arg") and k.rstrip("+") not in keys]
    return keys


class TestRealConfigs:
    def test_every_file_is_listed_with_its_source_and_both_distributions_are_there(self):
        rows = _sources()
        assert sorted(r["file"] for r in rows) == REAL
        assert all(r["repo"] and r["path"] and len(r["commit"]) == 40 for r in rows)
        assert {r["file"].split("-")[0] for r in rows} == {"k3s", "rke2"}
        assert 8 <= len(REAL) <= 15

    @pytest.mark.parametrize("name", REAL)
    def test_loads_and_every_item_rewritten_as_itself_is_byte_identical(self, name):
        text = (DATA / name).read_text()
        config = dc.load([(CONFIG, text)])
        for key in _arg_keys(config):
            items = config.entries(key)
            assert items
            for index, entry in enumerate(items):
                same = dc.render_item(entry.flag, entry.value, entry.op, _dashes(text, entry))
                old = _raw(text, key, index)
                assert dc.edit(text, [ReplaceItem(key, index, old, same)]).text == text

    @pytest.mark.parametrize("name", REAL)
    def test_setting_a_flag_changes_only_that_item(self, name):
        text = (DATA / name).read_text()
        config = dc.load([(CONFIG, text)])
        keys = _arg_keys(config)
        if not keys:
            # nothing to edit in place: a new list goes after the file's own text, which stays as it was
            edited = dc.edit(text, [AppendItem(API, "profiling=false", False)]).text
            assert edited.startswith(text.rstrip("\n")) and edited[: len(text)].rstrip("\n") == text.rstrip("\n")
            assert dc.load([(CONFIG, edited)]).flags(API)[0] == {"profiling": "false"}
            return
        for key in keys:
            entry = config.entries(key)[-1]
            plan = config.plan(key, SetFlag(entry.flag, "cisfix-test"), OWNED, "k3s")
            assert [p for p, _ in plan] == [CONFIG]
            new = config.apply(plan)[CONFIG].text
            diff = changed_lines(text, new)
            old_line = text.splitlines()[entry.line - 1]
            assert diff == ["-" + old_line, "+" + old_line.replace(_value_text(old_line, entry), "cisfix-test", 1)]
            assert new.endswith("\n") == text.endswith("\n")


    @pytest.mark.parametrize("name", REAL)
    def test_removing_a_flag_removes_only_its_line(self, name):
        text = (DATA / name).read_text()
        config = dc.load([(CONFIG, text)])
        for key in _arg_keys(config):
            entries = config.entries(key)
            if len(entries) < 2:
                continue
            first = entries[0]
            plan = config.plan(key, RemoveFlag(first.flag), OWNED, "k3s")
            new = config.apply(plan)[CONFIG].text
            assert changed_lines(text, new) == ["-" + text.splitlines()[first.line - 1]]
            assert first.flag not in dc.load([(CONFIG, new)]).flags(key, {}, "k3s")[0]


def _raw(text: str, key: str, index: int) -> str:
    value = (YAML(typ="safe").load(text) or {})[key]
    return value if isinstance(value, str) else value[index]


def _dashes(text: str, entry: ArgEntry) -> str:
    line = text.splitlines()[entry.line - 1]
    body = line.split(entry.flag, 1)[0]
    return "--" if body.endswith("--") else ""


def _value_text(line: str, entry: ArgEntry) -> str:
    return line.split(entry.flag, 1)[1].split("=", 1)[1].split('"')[0].split("#")[0].rstrip()


# --- property: plan + edit give the flags asked for --------------------------------------------------


NAMES = ["a", "b", "tls-cipher-suites"]  # the last one a list flag (dc.LIST_FLAGS)
LEADING = [(), ("a=x",), ("tls-cipher-suites=x",)]
VALUES = ["x", "y", "x,y", "z,x"]


@st.composite
def items(draw) -> str:
    name = draw(st.sampled_from(NAMES))
    op = draw(st.sampled_from(["=", "=", "+=", "-="]))
    if draw(st.integers(0, 9)) == 0:
        return name
    return f"{name}{op}{draw(st.sampled_from(VALUES))}"


@st.composite
def file_texts(draw, key: str) -> str:
    lines = []
    for suffix in draw(st.lists(st.sampled_from(["", "+"]), unique=True, max_size=2)):  # a key once per file
        literal = key + suffix
        values = draw(st.lists(items(), max_size=3))
        style = draw(st.sampled_from(["block0", "block2", "flow", "quoted", "string"]))
        if style == "string" and len(values) == 1:
            lines.append(f'{literal}: "{values[0]}"')
        elif style == "flow" or not values:
            lines.append(f"{literal}: [" + ", ".join(f'"{v}"' if "," in v else v for v in values) + "]")
        else:
            indent = "" if style == "block0" else "  "
            quote = '"' if style == "quoted" else ""
            lines.append(f"{literal}:")
            lines += [f"{indent}- {quote}{v}{quote}" if quote or "," not in v else f'{indent}- "{v}"' for v in values]
        if draw(st.booleans()):
            lines.append("# a comment")
    if not lines or draw(st.booleans()):
        lines.insert(0, "profile: cis")
    text = "\n".join(lines)
    return text + ("\n" if draw(st.booleans()) else "")


def reference(texts: List[Tuple[str, str]], key: str, defaults: Dict[str, Optional[str]], rules: str,
              leading: Tuple[str, ...] = ()):
    """The effective flags, computed from plain YAML data as k3s does (configfilearg, then the
    distribution's leading items, then GetArgs)."""
    raw: List[str] = []
    for _, text in texts:
        for k, v in (YAML(typ="safe").load(text) or {}).items():
            if k == key:
                raw = [v] if isinstance(v, str) else list(v)
            elif k == key + "+":
                raw = raw + ([v] if isinstance(v, str) else list(v))
    raw = list(leading) + raw
    out: Dict[str, Optional[str]] = {}
    if rules == "replace":
        out.update(defaults)
        for item in raw:
            name, sep, value = item.lstrip("-").partition("=")
            out[name] = value if sep else None
        return out
    initial, multi, mixed = dict(defaults), {}, set()
    for item in raw:
        arg, sep, value = item.lstrip("-").partition("=")
        flag = arg.rstrip("+-")
        value = value if sep else None
        seen = multi.get(flag, [])
        first = [initial.pop(flag)] if flag in initial else []
        if arg.endswith("+"):
            multi[flag] = first + seen + [value]
        elif arg.endswith("-"):
            multi[flag] = [value] + first + seen
        else:
            multi[flag] = seen + [value]
        if arg != flag or (flag in dc.LIST_FLAGS and len(multi[flag]) > 1):
            mixed.add(flag)
    for flag, value in initial.items():
        multi[flag] = [value]
    return {f: (",".join("true" if v is None else v for v in vs) if f in mixed else vs[-1]) for f, vs in multi.items()}


OPS = st.one_of(
    st.builds(SetFlag, st.sampled_from(NAMES), st.one_of(st.none(), st.sampled_from(VALUES))),
    st.builds(RemoveFlag, st.sampled_from(NAMES)),
    st.builds(AddFlagItem, st.sampled_from(NAMES), st.sampled_from(["x", "y", "w"])),
    st.builds(RemoveFlagItem, st.sampled_from(NAMES), st.sampled_from(["x", "y", "w"])),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_text=file_texts(API), late=file_texts(API), rules=st.sampled_from(["k3s", "replace"]),
       ops=st.lists(st.one_of(st.builds(SetFlag, st.sampled_from(NAMES), st.sampled_from(VALUES)),
                              st.builds(AddFlagItem, st.sampled_from(NAMES), st.sampled_from(["x", "w"]))),
                    min_size=2, max_size=4))
def test_plan_many_in_one_edit_per_file_equals_planning_one_by_one(config_text, late, rules, ops):
    texts = {CONFIG: config_text, dropin("95-late.yaml"): late}
    config = dc.load(ordered(texts))
    joined = dict(texts)
    for path, edited in config.apply(config.plan_many(API, ops, OWNED, rules)).items():
        joined[path] = edited.text
    stepwise = dict(texts)
    for op in ops:
        _, stepwise, _ = run(stepwise, op, rules=rules)
    assert joined == {p: t for p, t in stepwise.items()}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_text=file_texts(API), early=file_texts(API), late=file_texts(API),
       owned=st.one_of(st.none(), file_texts(API)),
       rules=st.sampled_from(["k3s", "replace"]),
       defaults=st.sampled_from([{}, {"a": "x"}, {"a": "x,y", "b": "z"}]), leading=st.sampled_from(LEADING),
       ops=st.lists(OPS, min_size=1, max_size=3))
def test_random_plans_give_the_flags_asked_for(config_text, early, late, owned, rules, defaults, leading, ops):
    texts = {CONFIG: config_text, dropin("10-early.yaml"): early, dropin("95-late.yaml"): late}
    if owned is not None:
        texts[OWNED] = owned
    for op in ops:
        before = reference(ordered(texts), API, defaults, rules, leading)
        config = dc.load(ordered(texts))
        try:
            plan = config.plan(API, op, OWNED, rules, defaults, leading)
        except EditError as exc:
            # only what no edit can give is refused, and the reason is named
            fixed = op.name in defaults or any(dc.parse_item(item)[0] == op.name for item in leading)
            if isinstance(op, RemoveFlag) or "itself passes" in str(exc):
                assert fixed and "the distribution itself passes" in str(exc)
            else:
                assert isinstance(op, RemoveFlagItem) and "empty" in str(exc)
                assert not [t for t in dc.tokens(before.get(op.name)) if t != op.item]
            continue
        for path, edited in config.apply(plan).items():
            texts[path] = edited.text
        after = reference(ordered(texts), API, defaults, rules, leading)
        name = op.name
        if isinstance(op, SetFlag):
            assert name in after and after[name] == op.value
        elif isinstance(op, RemoveFlag):
            assert name not in after
        elif isinstance(op, AddFlagItem):
            assert op.item in dc.tokens(after.get(name))
        else:
            assert op.item not in dc.tokens(after.get(name))
        assert {k: v for k, v in after.items() if k != name} == {k: v for k, v in before.items() if k != name}
        assert dc.load(ordered(texts)).flags(API, defaults, rules, leading)[0] == after


def test_equal_additions_planned_apart_are_made_once():
    """Two checks plan against the same file before either is applied (one transaction)."""
    config = dc.load([(CONFIG, "")])
    ops = [op for flag in (SetFlag("d", "4"), SetFlag("d", "4"), SetFlag("e", "5"))
           for _, file_ops in config.plan(API, flag, OWNED) for op in file_ops]
    text = dc.edit("", ops).text
    assert text.count("d=4") == 1 and text.count("e=5") == 1
