use super::*;
use time::macros::datetime;

fn parse(s: &str) -> Result<Limits, PolicyError> {
    Limits::parse(s.as_bytes())
}

#[test]
fn full_policy_round_trips_canonically() {
    let text = "tally-policy/1\n# a comment\n\nrule any(pages 100, all(minutes 60, opens 3))\n\
                pages 300\nminutes 600\nopens 20\nunits 1000\nprints 10\nallow print,copy\n\
                not-before 2026-12-01\nnot-after 2026-12-31\npage-block 5\ntime-unit 900\n\
                idle-pause 120\nweights offset=+01:00 default=2\nband 20:00-06:00 1\n";
    let l = parse(text).unwrap();
    assert_eq!(l.pages, Some(300));
    assert_eq!(l.not_before, Some(datetime!(2026-12-01 00:00:00 UTC)));
    assert_eq!(l.not_after, Some(datetime!(2026-12-31 23:59:59 UTC)));
    assert!(l.rights.print && l.rights.copy);
    assert_eq!(l.weights.utc_offset_minutes, 60);
    assert_eq!(l.idle_pause, 120);
    assert_eq!(
        l.rule,
        Some(Rule::Any(vec![
            Rule::Limit {
                measure: Measure::Pages,
                max: 100
            },
            Rule::All(vec![
                Rule::Limit {
                    measure: Measure::Minutes,
                    max: 60
                },
                Rule::Limit {
                    measure: Measure::Opens,
                    max: 3
                },
            ]),
        ]))
    );
    let canon = l.to_text();
    assert_eq!(Limits::parse_canonical(canon.as_bytes()).unwrap(), l);
    assert_eq!(
        Limits::parse_canonical(text.as_bytes()),
        Err(PolicyError::NotCanonical)
    );
}

#[test]
fn default_is_unlimited_and_canonical() {
    let l = Limits::default();
    assert!(l.is_unlimited());
    let t = l.to_text();
    assert_eq!(t, "tally-policy/1\npage-block 10\ntime-unit 60\n");
    assert_eq!(Limits::parse_canonical(t.as_bytes()).unwrap(), l);
}

#[test]
fn malformed_policies_name_the_problem() {
    let cases: &[(&str, &str)] = &[
        ("tally-policy/2\npages 1\n", "first line"),
        (
            "tally-policy/1\npagez 1\n",
            "line 2: unknown directive `pagez`",
        ),
        (
            "tally-policy/1\npages 1\npages 2\n",
            "line 3: `pages` given twice",
        ),
        ("tally-policy/1\npages -1\n", "not a plain decimal"),
        ("tally-policy/1\nidle-pause 29\n", "line 2: `idle-pause`"),
        ("tally-policy/1\nidle-pause 3601\n", "line 2: `idle-pause`"),
        (
            "tally-policy/1\nidle-pause 60\nidle-pause 90\n",
            "line 3: `idle-pause` given twice",
        ),
        ("tally-policy/1\npages 007\n", "not a plain decimal"),
        ("tally-policy/1\npages 1000000001\n", "more than"),
        (
            "tally-policy/1\npages 99999999999999999999999\n",
            "too large",
        ),
        ("tally-policy/1\nnot-after 2026-13-01\n", "not a date"),
        (
            "tally-policy/1\nnot-after 2026-12-01T00:00:00+01:00\n",
            "UTC",
        ),
        (
            "tally-policy/1\nnot-after 2026-12-01T00:00:00.5Z\n",
            "whole seconds",
        ),
        (
            "tally-policy/1\nnot-before 2026-12-02\nnot-after 2026-12-01\n",
            "not-before is after",
        ),
        ("tally-policy/1\nallow print,scan\n", "unknown right `scan`"),
        ("tally-policy/1\nallow print,print\n", "given twice"),
        ("tally-policy/1\nprints 3\n", "printing is not allowed"),
        ("tally-policy/1\npage-block 0\n", "outside 1..=10000"),
        ("tally-policy/1\ntime-unit 86401\n", "outside"),
        (
            "tally-policy/1\nband 20:00-06:00 1\n",
            "must follow a `weights`",
        ),
        (
            "tally-policy/1\nweights offset=+15:00 default=1\n",
            "beyond",
        ),
        ("tally-policy/1\nweights default=1\n", "offset="),
        (
            "tally-policy/1\nweights offset=+00:00 default=1\nband 24:00-06:00 1\n",
            "not HH:MM",
        ),
        (
            "tally-policy/1\nweights offset=+00:00 default=1\nband 06:00-06:00 1\n",
            "empty",
        ),
        (
            "tally-policy/1\nweights offset=+00:00 default=1\nband 20:00-06:00 1\nband 05:00-07:00 2\n",
            "bands overlap at 05:00",
        ),
        (
            "tally-policy/1\nrule any(pages 1 minutes 2)\n",
            "expected `,` or `)`",
        ),
        (
            "tally-policy/1\nrule any(bytes 1)\n",
            "unknown measure `bytes`",
        ),
        ("tally-policy/1\nrule pages 1)\n", "unexpected text"),
        (
            "tally-policy/1\nrule all(all(all(all(all(pages 1)))))\n",
            "nested deeper",
        ),
        ("tally-policy/1\nrule all(\n", "expected a threshold"),
    ];
    for (text, want) in cases {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}: got `{err}`, want `{want}`");
    }
    assert!(matches!(
        Limits::parse(&vec![b'#'; MAX_POLICY_BYTES + 1]),
        Err(PolicyError::TooLarge(_))
    ));
    assert_eq!(Limits::parse(&[0xff]), Err(PolicyError::NotText));
    let long = format!("tally-policy/1\n# {}\n", "x".repeat(600));
    assert_eq!(parse(&long), Err(PolicyError::LongLine { line: 2 }));
    let many = format!(
        "tally-policy/1\nrule all({})\n",
        vec!["pages 1"; 40].join(", ")
    );
    assert!(parse(&many).unwrap_err().to_string().contains("nodes"));
}

#[test]
fn weights_at_band_edges() {
    let l = parse(
        "tally-policy/1\nweights offset=+00:00 default=2\nband 20:00-06:00 1\nband 12:00-12:30 5\n",
    )
    .unwrap();
    let w = &l.weights;
    assert_eq!(w.weight_at(datetime!(2026-01-01 19:59:59 UTC)), 2);
    assert_eq!(w.weight_at(datetime!(2026-01-01 20:00:00 UTC)), 1);
    assert_eq!(w.weight_at(datetime!(2026-01-01 23:59:59 UTC)), 1);
    assert_eq!(w.weight_at(datetime!(2026-01-02 00:00:00 UTC)), 1);
    assert_eq!(w.weight_at(datetime!(2026-01-02 05:59:59 UTC)), 1);
    assert_eq!(w.weight_at(datetime!(2026-01-02 06:00:00 UTC)), 2);
    assert_eq!(w.weight_at(datetime!(2026-01-02 11:59:00 UTC)), 2);
    assert_eq!(w.weight_at(datetime!(2026-01-02 12:00:00 UTC)), 5);
    assert_eq!(w.weight_at(datetime!(2026-01-02 12:29:59 UTC)), 5);
    assert_eq!(w.weight_at(datetime!(2026-01-02 12:30:00 UTC)), 2);
}

#[test]
fn weights_use_the_vendor_offset_not_the_machine() {
    let l = parse("tally-policy/1\nweights offset=-05:00 default=2\nband 20:00-06:00 1\n").unwrap();
    // 01:00 UTC is 20:00 at −05:00: night.
    assert_eq!(l.weights.weight_at(datetime!(2026-01-01 01:00:00 UTC)), 1);
    assert_eq!(l.weights.weight_at(datetime!(2026-01-01 00:59:59 UTC)), 2);
    // The same instant expressed in another offset weighs the same.
    assert_eq!(
        l.weights
            .weight_at(datetime!(2026-01-01 01:00:00 UTC).to_offset(time::macros::offset!(+9))),
        1
    );
    // 10:59 UTC is 05:59 at −05:00 (night); 11:00 UTC is 06:00 (day).
    assert_eq!(l.weights.weight_at(datetime!(2026-01-01 10:59:00 UTC)), 1);
    assert_eq!(l.weights.weight_at(datetime!(2026-01-01 11:00:00 UTC)), 2);
}

#[test]
fn far_future_dates_parse() {
    let l = parse("tally-policy/1\nnot-after 9999-12-31\n").unwrap();
    assert_eq!(l.not_after, Some(datetime!(9999-12-31 23:59:59 UTC)));
    assert_eq!(parse(&l.to_text()).unwrap(), l);
}

#[test]
fn combined_rule_ands_everything() {
    let l = parse("tally-policy/1\npages 5\nopens 2\nrule any(minutes 1, units 3)\n").unwrap();
    assert_eq!(
        l.combined_rule().to_string(),
        "all(pages 5, opens 2, any(minutes 1, units 3))"
    );
}

proptest::proptest! {
    /// Hostile policy text: a clear error or a policy, never a panic; what parses
    /// round-trips through the canonical form.
    #[test]
    fn arbitrary_policies_never_panic(body in "(?s)(pages|minutes|opens|units|prints|allow|rule|band|weights|not-after|page-block|time-unit|[ a-z0-9:(),+=#\\n-]){0,40}") {
        let text = format!("tally-policy/1\n{body}");
        if let Ok(l) = Limits::parse(text.as_bytes()) {
            let canon = l.to_text();
            proptest::prop_assert_eq!(Limits::parse_canonical(canon.as_bytes()), Ok(l));
        }
    }

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let _ = Limits::parse(&bytes);
        let mut b = b"tally-policy/1\n".to_vec();
        b.extend_from_slice(&bytes);
        let _ = Limits::parse(&b);
    }

    /// Rule text from random trees parses back to the same tree.
    #[test]
    fn rules_round_trip(maxes in proptest::collection::vec(0u64..1000, 1..6), any in proptest::bool::ANY) {
        let leaves: Vec<Rule> = maxes.iter().enumerate().map(|(i, &max)| Rule::Limit {
            measure: [Measure::Pages, Measure::Minutes, Measure::Opens, Measure::Units][i % 4],
            max,
        }).collect();
        let r = if any { Rule::Any(leaves) } else { Rule::All(vec![Rule::Any(leaves.clone()), leaves[0].clone()]) };
        proptest::prop_assert_eq!(parse_rule(&r.to_string()), Ok(r));
    }
}
