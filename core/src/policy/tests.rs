use super::*;
use crate::trail::{Body, LicenceId, Usage};
use time::macros::datetime;

const LIC: LicenceId = LicenceId([0x11; 16]);
const OTHER: LicenceId = LicenceId([0x22; 16]);

fn limits(text: &str) -> Limits {
    Limits::parse(format!("tally-policy/1\n{text}").as_bytes()).unwrap()
}

fn clock(t: OffsetDateTime) -> TestClock {
    TestClock::at(t)
}

const T0: OffsetDateTime = datetime!(2026-11-25 12:00:00 UTC);

fn record(tally: &mut Tally, usage: Usage, at: OffsetDateTime) {
    tally.add(&Body { at, usage });
}

fn pages(n: u32) -> Usage {
    Usage::Pages {
        licence: LIC,
        first: 1,
        count: n,
    }
}

fn time(s: u32) -> Usage {
    Usage::Time {
        licence: LIC,
        seconds: s,
    }
}

fn open() -> Usage {
    Usage::Open { licence: LIC }
}

#[test]
fn unlimited_licence_is_allowed_with_nothing_counted_down() {
    let l = Limits::default();
    let mut t = Tally::new(LIC);
    for _ in 0..1000 {
        record(&mut t, pages(10), T0);
    }
    let d = evaluate(&l, &t, &clock(T0));
    assert_eq!(
        d,
        Decision::Allowed {
            remaining: Remaining {
                prints: Some(0),
                ..Remaining::default()
            }
        }
    );
    assert_eq!(page_charge(&l, &t, &clock(T0)), Ok(10));
    assert_eq!(time_charge(&l, &t, &clock(T0)), Ok(60));
}

#[test]
fn exactly_n_pages_then_used_up() {
    let l = limits("pages 30\npage-block 10\n");
    let c = clock(T0);
    let mut t = Tally::new(LIC);
    for expected_left in [30, 20, 10] {
        match evaluate_reading(&l, &t, &c) {
            Decision::Allowed { remaining } => assert_eq!(remaining.pages, Some(expected_left)),
            d => panic!("{d:?}"),
        }
        let n = page_charge(&l, &t, &c).unwrap();
        assert_eq!(n, 10);
        record(&mut t, pages(n), T0);
    }
    assert_eq!(t.page_views, 30);
    assert_eq!(
        page_charge(&l, &t, &c),
        Err(Reason::PagesUsedUp { limit: 30 })
    );
    assert_eq!(
        evaluate(&l, &t, &c),
        Decision::Limited {
            reason: Reason::PagesUsedUp { limit: 30 }
        }
    );
}

#[test]
fn last_block_is_capped_at_what_is_left() {
    let l = limits("pages 25\npage-block 10\n");
    let c = clock(T0);
    let mut t = Tally::new(LIC);
    let mut charged = vec![];
    while let Ok(n) = page_charge(&l, &t, &c) {
        charged.push(n);
        record(&mut t, pages(n), T0);
    }
    assert_eq!(charged, [10, 10, 5]);
    // One page left: a block of one.
    let l = limits("pages 1\npage-block 10\n");
    assert_eq!(page_charge(&l, &Tally::new(LIC), &c), Ok(1));
}

#[test]
fn time_is_charged_per_unit_and_the_last_unit_is_capped() {
    let l = limits("minutes 2\ntime-unit 45\n");
    let c = clock(T0);
    let mut t = Tally::new(LIC);
    let mut charged = vec![];
    while let Ok(s) = time_charge(&l, &t, &c) {
        charged.push(s);
        record(&mut t, time(s), T0);
    }
    assert_eq!(charged, [45, 45, 30]);
    assert_eq!(t.seconds, 120);
    assert_eq!(
        evaluate_reading(&l, &t, &c),
        Decision::Limited {
            reason: Reason::TimeUsedUp { limit_minutes: 2 }
        }
    );
}

#[test]
fn opens_count_the_session_being_started_not_the_running_one() {
    let l = limits("opens 2\n");
    let c = clock(T0);
    let mut t = Tally::new(LIC);
    assert!(evaluate(&l, &t, &c).is_allowed());
    record(&mut t, open(), T0);
    assert!(evaluate_reading(&l, &t, &c).is_allowed());
    assert!(evaluate(&l, &t, &c).is_allowed());
    record(&mut t, open(), T0);
    // The second session runs to its end…
    assert!(evaluate_reading(&l, &t, &c).is_allowed());
    assert_eq!(page_charge(&l, &t, &c), Ok(10));
    // …but a third may not start.
    assert_eq!(
        evaluate(&l, &t, &c),
        Decision::Limited {
            reason: Reason::OpensUsedUp { limit: 2 }
        }
    );
    // A forged third opening (never the viewer's doing) stops reading too.
    record(&mut t, open(), T0);
    assert!(!evaluate_reading(&l, &t, &c).is_allowed());
}

#[test]
fn last_second_of_the_last_day() {
    let l = limits("not-after 2026-12-31\n");
    let t = Tally::new(LIC);
    for (now, ok) in [
        (datetime!(2026-12-31 23:59:58 UTC), true),
        (datetime!(2026-12-31 23:59:59 UTC), true),
        (datetime!(2026-12-31 23:59:59.999 UTC), true),
        (datetime!(2027-01-01 00:00:00 UTC), false),
        (datetime!(2027-01-01 00:59:59 +01:00), true), // = 23:59:59 UTC
    ] {
        let d = evaluate(&l, &t, &clock(now));
        assert_eq!(d.is_allowed(), ok, "{now}: {d:?}");
        if !ok {
            assert_eq!(
                d,
                Decision::Limited {
                    reason: Reason::Expired {
                        not_after: datetime!(2026-12-31 23:59:59 UTC)
                    }
                }
            );
            assert!(page_charge(&l, &t, &clock(now)).is_err());
            assert!(time_charge(&l, &t, &clock(now)).is_err());
        }
    }
}

#[test]
fn start_date_in_the_future() {
    let l = limits("not-before 2026-12-01\nnot-after 2026-12-31\n");
    let t = Tally::new(LIC);
    let d = evaluate(&l, &t, &clock(T0));
    assert_eq!(
        d,
        Decision::Limited {
            reason: Reason::NotYetValid {
                not_before: datetime!(2026-12-01 00:00:00 UTC)
            }
        }
    );
    assert!(
        d.reason()
            .unwrap()
            .to_string()
            .contains("2026-12-01 00:00:00 UTC")
    );
    assert!(!evaluate(&l, &t, &clock(datetime!(2026-11-30 23:59:59 UTC))).is_allowed());
    assert!(evaluate(&l, &t, &clock(datetime!(2026-12-01 00:00:00 UTC))).is_allowed());
}

#[test]
fn not_after_far_in_the_future() {
    let l = limits("not-after 9999-12-31\npages 5\n");
    let d = evaluate(&l, &Tally::new(LIC), &clock(T0));
    let Decision::Allowed { remaining } = d else {
        panic!("{d:?}")
    };
    assert_eq!(remaining.until, Some(datetime!(9999-12-31 23:59:59 UTC)));
    assert_eq!(remaining.pages, Some(5));
    assert!(remaining.to_string().contains("until 9999-12-31"));
}

#[test]
fn clock_set_back_is_denied_when_dates_matter() {
    let l = limits("not-after 2026-12-31\n");
    let mut t = Tally::new(LIC);
    // The newest record may belong to another licence: it still bounds the true time.
    record(&mut t, Usage::Open { licence: OTHER }, T0);
    let back = T0 - Duration::seconds(CLOCK_TOLERANCE_SECONDS + 1);
    let d = evaluate(&l, &t, &clock(back));
    assert_eq!(
        d,
        Decision::Denied {
            reason: Reason::ClockSetBack {
                newest_record: T0,
                now: back
            }
        }
    );
    assert!(d.reason().unwrap().is_suspicious());
    assert!(
        d.reason()
            .unwrap()
            .to_string()
            .contains("earlier than the last recorded use")
    );
    assert!(matches!(
        page_charge(&l, &t, &clock(back)),
        Err(Reason::ClockSetBack { .. })
    ));
    // Within the tolerance: allowed.
    let slightly = T0 - Duration::seconds(CLOCK_TOLERANCE_SECONDS);
    assert!(evaluate(&l, &t, &clock(slightly)).is_allowed());
}

#[test]
fn clock_set_back_never_extends_a_date_limit() {
    // The rental ended a minute ago by the newest record; setting the clock back within the
    // tolerance must not reopen it: dates are judged at the later of clock and record.
    let l = limits("not-after 2026-11-25T11:59:00Z\n");
    let mut t = Tally::new(LIC);
    record(&mut t, Usage::Nonce { value: "x".into() }, T0);
    let d = evaluate(&l, &t, &clock(datetime!(2026-11-25 11:58:30 UTC)));
    assert!(
        matches!(
            d,
            Decision::Limited {
                reason: Reason::Expired { .. }
            }
        ),
        "{d:?}"
    );
}

#[test]
fn clock_set_back_does_not_matter_without_dates() {
    let l = limits("pages 100\n");
    let mut t = Tally::new(LIC);
    record(&mut t, open(), T0);
    let back = T0 - Duration::days(365);
    assert!(evaluate(&l, &t, &clock(back)).is_allowed());
    // But it does once time-of-day weights price the hours.
    let w = limits("units 100\nweights offset=+00:00 default=2\nband 20:00-06:00 1\n");
    assert!(matches!(
        evaluate(&w, &t, &clock(back)),
        Decision::Denied { .. }
    ));
}

#[test]
fn weighted_units_at_band_edges() {
    // [0103]: night hours cost 1 unit, day hours 2; 3 units bought.
    let l =
        limits("units 3\ntime-unit 3600\nweights offset=+00:00 default=2\nband 20:00-06:00 1\n");
    let mut t = Tally::new(LIC);
    let day = datetime!(2026-11-25 19:59:59 UTC);
    let night = datetime!(2026-11-25 20:00:00 UTC);
    assert_eq!(time_charge(&l, &t, &clock(day)), Ok(3600));
    record(&mut t, time(3600), day); // 2 units
    // One unit left: not enough for a day hour, enough for a night hour.
    assert_eq!(
        time_charge(
            &l,
            &t,
            &clock(day + Duration::seconds(1) - Duration::seconds(1))
        ),
        Err(Reason::UnitsUsedUp {
            limit: 3,
            left: 1,
            needed: 2
        })
    );
    assert_eq!(time_charge(&l, &t, &clock(night)), Ok(3600));
    record(&mut t, time(3600), night); // 1 unit
    assert_eq!(t.units(&l.weights), 3);
    assert!(matches!(
        time_charge(&l, &t, &clock(night + Duration::hours(1))),
        Err(Reason::UnitsUsedUp { left: 0, .. })
    ));
    assert!(matches!(
        evaluate_reading(&l, &t, &clock(night + Duration::hours(1))),
        Decision::Limited {
            reason: Reason::UnitsUsedUp { limit: 3, .. }
        }
    ));
    // The morning edge: 05:59:59 is night, 06:00:00 day.
    let l = limits("units 1\nweights offset=+00:00 default=2\nband 20:00-06:00 1\n");
    let t = Tally::new(LIC);
    assert!(time_charge(&l, &t, &clock(datetime!(2026-11-26 05:59:59 UTC))).is_ok());
    assert!(time_charge(&l, &t, &clock(datetime!(2026-11-26 06:00:00 UTC))).is_err());
}

#[test]
fn free_hours_cost_nothing() {
    let l = limits("units 1\nweights offset=+00:00 default=1\nband 00:00-06:00 0\n");
    let mut t = Tally::new(LIC);
    let night = datetime!(2026-11-25 02:00:00 UTC);
    for _ in 0..50 {
        record(&mut t, time(60), night);
    }
    assert_eq!(t.units(&l.weights), 0);
    assert!(time_charge(&l, &t, &clock(night)).is_ok());
}

#[test]
fn any_tree_lets_either_threshold_carry_on() {
    // 10 pages OR 1 minute, whichever lasts longer.
    let l = limits("page-block 4\nrule any(pages 10, minutes 1)\n");
    let c = clock(T0);
    let mut t = Tally::new(LIC);
    record(&mut t, pages(10), T0);
    // Pages used up, but minutes hold: reading goes on, pages now unbounded.
    assert_eq!(page_charge(&l, &t, &c), Ok(4));
    assert_eq!(time_charge(&l, &t, &c), Ok(60));
    record(&mut t, time(60), T0);
    // Both used up: the first exhausted threshold is named.
    assert_eq!(
        evaluate_reading(&l, &t, &c),
        Decision::Limited {
            reason: Reason::PagesUsedUp { limit: 10 }
        }
    );
}

#[test]
fn all_tree_stops_at_the_first_exhausted_threshold() {
    let l = limits("pages 10\nminutes 1\n");
    let c = clock(T0);
    let mut t = Tally::new(LIC);
    record(&mut t, time(60), T0);
    assert_eq!(
        page_charge(&l, &t, &c),
        Err(Reason::TimeUsedUp { limit_minutes: 1 })
    );
    assert_eq!(
        evaluate(&l, &t, &c),
        Decision::Limited {
            reason: Reason::TimeUsedUp { limit_minutes: 1 }
        }
    );
}

#[test]
fn nested_tree_headroom() {
    // pages ≤ 100 AND (opens ≤ 2 OR minutes ≤ 10)
    let l = limits("pages 100\nrule any(opens 2, minutes 10)\n");
    let c = clock(T0);
    let mut t = Tally::new(LIC);
    record(&mut t, open(), T0);
    record(&mut t, open(), T0);
    record(&mut t, open(), T0);
    // Opens exhausted at opening time, but minutes hold: allowed.
    let Decision::Allowed { remaining } = evaluate(&l, &t, &c) else {
        panic!()
    };
    assert_eq!(remaining.pages, Some(100));
    // Opens are exhausted, so the `any` leans on minutes alone; opens then are unbounded.
    assert_eq!(remaining.opens, None);
    assert_eq!(remaining.seconds, Some(600));
    for _ in 0..10 {
        record(&mut t, time(60), T0);
    }
    assert_eq!(
        evaluate(&l, &t, &c),
        Decision::Limited {
            reason: Reason::OpensUsedUp { limit: 2 }
        }
    );
    // A tree that holds always leaves a positive charge (never a zero-count record).
    let l = limits("rule all(any(pages 3, opens 1), any(minutes 1, units 1))\n");
    let t = Tally::new(LIC);
    assert_eq!(page_charge(&l, &t, &c), Ok(10));
    let l = limits("rule all(pages 3, any(minutes 1, units 1))\n");
    assert_eq!(page_charge(&l, &t, &c), Ok(3));
}

#[test]
fn printing_needs_the_right_and_pages_left() {
    let c = clock(T0);
    let mut t = Tally::new(LIC);
    assert_eq!(
        print_allowed(&limits(""), &t, &c, 1),
        Err(Reason::PrintNotAllowed)
    );
    let l = limits("allow print\nprints 5\npages 10\n");
    record(
        &mut t,
        Usage::Print {
            licence: LIC,
            pages: 3,
        },
        T0,
    );
    assert_eq!(print_allowed(&l, &t, &c, 2), Ok(()));
    assert_eq!(
        print_allowed(&l, &t, &c, 3),
        Err(Reason::PrintsUsedUp { limit: 5, left: 2 })
    );
    let Decision::Allowed { remaining } = evaluate(&l, &t, &c) else {
        panic!()
    };
    assert_eq!(remaining.prints, Some(2));
    // A used-up rental prints nothing, whatever the print allowance.
    record(&mut t, pages(10), T0);
    assert_eq!(
        print_allowed(&l, &t, &c, 1),
        Err(Reason::PagesUsedUp { limit: 10 })
    );
    // Print right without a count: unlimited printing.
    assert_eq!(
        print_allowed(&limits("allow print\n"), &t, &c, 1000),
        Ok(())
    );
}

#[test]
fn copying_needs_the_right() {
    let c = clock(T0);
    let t = Tally::new(LIC);
    assert_eq!(
        copy_allowed(&limits("allow print\n"), &t, &c, 10),
        Err(Reason::CopyNotAllowed)
    );
    assert_eq!(copy_allowed(&limits("allow copy\n"), &t, &c, 10), Ok(()));
    assert_eq!(
        copy_allowed(&limits("allow copy\nnot-after 2026-01-01\n"), &t, &c, 10),
        Err(Reason::Expired {
            not_after: datetime!(2026-01-01 23:59:59 UTC)
        })
    );
}

#[test]
fn other_licences_never_use_this_rental_up() {
    let l = limits("pages 10\nminutes 1\nopens 1\n");
    let c = clock(T0);
    let mut t = Tally::new(LIC);
    for _ in 0..100 {
        record(
            &mut t,
            Usage::Pages {
                licence: OTHER,
                first: 1,
                count: 10,
            },
            T0,
        );
        record(
            &mut t,
            Usage::Time {
                licence: OTHER,
                seconds: 60,
            },
            T0,
        );
        record(&mut t, Usage::Open { licence: OTHER }, T0);
    }
    assert!(evaluate(&l, &t, &c).is_allowed());
}

#[test]
fn every_reason_reads_as_a_sentence() {
    let reasons = [
        Reason::PagesUsedUp { limit: 3 },
        Reason::TimeUsedUp { limit_minutes: 3 },
        Reason::OpensUsedUp { limit: 3 },
        Reason::UnitsUsedUp {
            limit: 3,
            left: 1,
            needed: 2,
        },
        Reason::Expired { not_after: T0 },
        Reason::NotYetValid { not_before: T0 },
        Reason::ClockSetBack {
            newest_record: T0,
            now: T0,
        },
        Reason::PrintNotAllowed,
        Reason::PrintsUsedUp { limit: 3, left: 1 },
        Reason::CopyNotAllowed,
    ];
    for r in reasons {
        let s = r.to_string();
        assert!(s.ends_with('.') && s.len() > 20, "{s}");
        assert!(!Decision::from(r.clone()).is_allowed());
        assert_eq!(
            matches!(Decision::from(r.clone()), Decision::Denied { .. }),
            r.is_suspicious()
        );
    }
}

proptest::proptest! {
    /// Charging until refused never exceeds a threshold and never stops short of it.
    #[test]
    fn charging_exhausts_exactly_the_thresholds(
        p in 1u64..200, m in 1u64..20, block in 1u32..50, unit in 1u32..400
    ) {
        let l = limits(&format!("pages {p}\nminutes {m}\npage-block {block}\ntime-unit {unit}\nrule any(pages {p}, minutes {m})\n"));
        let c = clock(T0);
        let mut t = Tally::new(LIC);
        while let Ok(n) = page_charge(&l, &t, &c) {
            proptest::prop_assert!(n >= 1 && n <= block);
            record(&mut t, pages(n), T0);
        }
        proptest::prop_assert_eq!(t.page_views, p);
        // No more page views; the prepaid ones may still be read, and that time is charged.
        proptest::prop_assert!(page_charge(&l, &t, &c).is_err());
        proptest::prop_assert!(time_charge(&l, &t, &c).is_ok());
        let mut t = Tally::new(LIC);
        while let Ok(s) = time_charge(&l, &t, &c) {
            proptest::prop_assert!(s >= 1 && s <= unit);
            record(&mut t, time(s), T0);
        }
        proptest::prop_assert_eq!(t.seconds, m * 60);
    }
}

#[test]
fn time_is_still_charged_while_the_last_prepaid_pages_are_read() {
    // The last block of page views is prepaid: the reader may read those pages, and the
    // time spent on them is charged; the next page charge is what refuses.
    let l = limits("pages 10\nminutes 60\npage-block 10\ntime-unit 60\n");
    let c = clock(T0);
    let mut t = Tally::new(LIC);
    record(&mut t, pages(10), T0);
    assert_eq!(time_charge(&l, &t, &c), Ok(60));
    assert!(matches!(
        page_charge(&l, &t, &c),
        Err(Reason::PagesUsedUp { limit: 10 })
    ));
    // Time itself used up still refuses.
    record(&mut t, time(3600), T0);
    assert!(matches!(
        time_charge(&l, &t, &c),
        Err(Reason::TimeUsedUp { .. })
    ));
}

fn copy(chars: u32) -> Usage {
    Usage::Copy {
        licence: LIC,
        chars,
    }
}

#[test]
fn copies_count_copy_records_and_are_refused_once_used_up() {
    let l = limits("allow copy\ncopies 2\n");
    let c = clock(T0);
    let mut t = Tally::new(LIC);
    record(&mut t, open(), T0);
    for _ in 0..2 {
        assert_eq!(copy_allowed(&l, &t, &c, 10), Ok(()));
        record(&mut t, copy(10), T0);
    }
    // Another licence's copies are not this one's.
    t.add(&Body {
        at: T0,
        usage: Usage::Copy {
            licence: OTHER,
            chars: 5,
        },
    });
    assert_eq!((t.copies, t.copied_chars), (2, 20));
    assert_eq!(
        copy_allowed(&l, &t, &c, 1),
        Err(Reason::CopiesUsedUp { limit: 2 })
    );
    assert_eq!(
        Reason::CopiesUsedUp { limit: 2 }.to_string(),
        "All 2 copies of this rental have been used."
    );
    // Copying used up never stops reading.
    assert!(evaluate_reading(&l, &t, &c).is_allowed());
}

#[test]
fn copy_chars_refuse_a_selection_longer_than_what_is_left() {
    let l = limits("allow copy\ncopy-chars 100\n");
    let c = clock(T0);
    let mut t = Tally::new(LIC);
    record(&mut t, open(), T0);
    record(&mut t, copy(70), T0);
    assert_eq!(
        copy_allowed(&l, &t, &c, 31),
        Err(Reason::CopyCharsUsedUp {
            limit: 100,
            left: 30,
            asked: 31
        })
    );
    assert_eq!(copy_allowed(&l, &t, &c, 30), Ok(()));
    match evaluate_reading(&l, &t, &c) {
        Decision::Allowed { remaining } => assert_eq!(remaining.copy_chars, Some(30)),
        d => panic!("{d:?}"),
    }
}

#[test]
fn copy_limits_need_the_copy_right_and_round_trip_canonically() {
    for text in ["copies 3\n", "copy-chars 10\n"] {
        let err = Limits::parse(format!("tally-policy/1\n{text}").as_bytes()).unwrap_err();
        assert!(err.to_string().contains("copying is not allowed"), "{err}");
    }
    let l = limits("copy-chars 500\ncopies 3\nallow copy\n");
    assert_eq!(
        l.to_text(),
        "tally-policy/1\ncopies 3\ncopy-chars 500\nallow copy\npage-block 10\ntime-unit 60\n"
    );
    assert_eq!(Limits::parse_canonical(l.to_text().as_bytes()), Ok(l));
}

#[test]
fn a_lost_licence_has_no_copies_left() {
    let l = limits("allow copy\ncopies 3\n");
    let mut t = Tally::new(LIC);
    t.write_off();
    assert!(copy_allowed(&l, &t, &clock(T0), 1).is_err());
}

#[test]
fn a_first_use_period_ends_its_length_after_the_first_open_record() {
    let l = limits("period-after-first-open 48h\n");
    let mut t = Tally::new(LIC);
    // Before the first opening the period has not begun, whatever the date.
    assert!(evaluate(&l, &t, &clock(T0 + Duration::days(400))).is_allowed());
    record(&mut t, open(), T0);
    // A later opening does not restart it: the first in card order counts.
    record(&mut t, open(), T0 + Duration::hours(10));
    let end = T0 + Duration::hours(48);
    match evaluate(&l, &t, &clock(end)) {
        Decision::Allowed { remaining } => assert_eq!(remaining.period_ends, Some(end)),
        d => panic!("{d:?}"),
    }
    let d = evaluate(&l, &t, &clock(end + Duration::seconds(1)));
    assert_eq!(
        d,
        Decision::Limited {
            reason: Reason::PeriodEnded {
                period: 48 * 3600,
                started: T0,
                ended: end
            }
        }
    );
    assert_eq!(
        d.reason().unwrap().to_string(),
        "The 48-hour period that began at your first opening ended at 2026-11-27 12:00:00 UTC."
    );
    assert!(page_charge(&l, &t, &clock(end + Duration::seconds(1))).is_err());
    assert!(time_charge(&l, &t, &clock(end + Duration::seconds(1))).is_err());
}

#[test]
fn a_clock_set_back_does_not_extend_a_first_use_period() {
    let l = limits("period-after-first-open 48h\n");
    let mut t = Tally::new(LIC);
    record(&mut t, open(), T0);
    record(&mut t, time(60), T0 + Duration::hours(47));
    let late = T0 + Duration::hours(49);
    assert!(matches!(
        evaluate(&l, &t, &clock(late)),
        Decision::Limited {
            reason: Reason::PeriodEnded { .. }
        }
    ));
    // What an opening at that time writes (the nonce of ValidateTrail) carries its time.
    t.add(&Body {
        at: late,
        usage: Usage::Nonce { value: "n".into() },
    });
    for back in [T0 + Duration::hours(1), T0 + Duration::hours(47)] {
        assert!(
            matches!(
                evaluate(&l, &t, &clock(back)),
                Decision::Denied {
                    reason: Reason::ClockSetBack { .. }
                }
            ),
            "clock set back to {back}"
        );
    }
}

#[test]
fn start_by_is_the_latest_first_opening() {
    let l = limits("period-after-first-open 7d\nstart-by 2026-11-30\n");
    let mut t = Tally::new(LIC);
    let by = datetime!(2026-11-30 23:59:59 UTC);
    assert!(evaluate(&l, &t, &clock(by)).is_allowed());
    let d = evaluate(&l, &t, &clock(by + Duration::seconds(1)));
    assert_eq!(d.reason(), Some(&Reason::NotStartedInTime { start_by: by }));
    assert_eq!(
        d.reason().unwrap().to_string(),
        "This rental had to be opened for the first time by 2026-11-30 23:59:59 UTC."
    );
    // Opened in time: the period runs its 7 days past start-by.
    record(&mut t, open(), by);
    assert!(evaluate_reading(&l, &t, &clock(by + Duration::days(6))).is_allowed());
    assert!(!evaluate_reading(&l, &t, &clock(by + Duration::days(8))).is_allowed());
}

#[test]
fn periods_parse_in_days_hours_minutes_or_seconds_and_have_one_canonical_spelling() {
    for (text, seconds, canonical) in [
        ("48h", 172_800, "2d"),
        ("2d", 172_800, "2d"),
        ("90m", 5_400, "90m"),
        ("7d", 604_800, "7d"),
        ("3601s", 3_601, "3601s"),
    ] {
        let l = limits(&format!("period-after-first-open {text}\n"));
        assert_eq!(l.period_after_first_open, Some(seconds), "{text}");
        assert!(
            l.to_text()
                .contains(&format!("\nperiod-after-first-open {canonical}\n")),
            "{text}"
        );
        assert_eq!(Limits::parse_canonical(l.to_text().as_bytes()), Ok(l));
    }
    for (text, want) in [
        ("period-after-first-open 48\n", "not a period"),
        ("period-after-first-open 48x\n", "not a period"),
        ("period-after-first-open 048h\n", "not a period"),
        ("period-after-first-open 59s\n", "outside"),
        ("period-after-first-open 3651d\n", "outside"),
        (
            "start-by 2026-12-01\n",
            "start-by needs period-after-first-open",
        ),
    ] {
        let err = Limits::parse(format!("tally-policy/1\n{text}").as_bytes()).unwrap_err();
        assert!(err.to_string().contains(want), "{text}: {err}");
    }
}

/// A fast start's totals for LIC: one opening, nothing else.
fn vouched_one_open() -> crate::trail::validator::Vouched {
    crate::trail::validator::Vouched {
        index: 2,
        counter: 2,
        upto: 1,
        prefix: 2,
        server_key: [0; 32],
        totals: vec![crate::trail::body::LicenceTotals {
            licence: LIC,
            opens: 1,
            pages: 0,
            seconds: 0,
            prints: 0,
            times: 0,
            history: None,
        }],
        recoveries: Vec::new(),
    }
}

#[test]
fn after_a_fast_start_the_first_opening_comes_from_the_vouched_records_or_the_period_fails_closed()
{
    let l = limits("period-after-first-open 48h\nallow copy\ncopies 5\n");
    let v = vouched_one_open();
    let later = [Body {
        at: T0 + Duration::hours(30),
        usage: open(),
    }];
    let c = clock(T0 + Duration::hours(40));
    // The vouched records are gone (archived): when the period began is not known, and a
    // later opening must not move its start later.
    let t = Tally::resume(LIC, &[], Some(&v), &later);
    assert!(t.history_unknown());
    assert_eq!(t.first_open(), None);
    assert_eq!(
        evaluate(&l, &t, &c).reason(),
        Some(&Reason::PeriodStartUnknown)
    );
    assert_eq!(copy_allowed(&l, &t, &c, 1), Err(Reason::PeriodStartUnknown));
    // The vouched records read back: the period began at the first of them.
    let mut t = Tally::resume(LIC, &[], Some(&v), &later);
    let prefix = [
        Body {
            at: T0 - Duration::hours(1),
            usage: Usage::Genesis,
        },
        Body {
            at: T0,
            usage: open(),
        },
    ];
    t.replay_vouched(&prefix);
    assert_eq!(t.first_open(), Some(T0));
    assert!(evaluate(&l, &t, &c).is_allowed());
    assert!(!evaluate(&l, &t, &clock(T0 + Duration::hours(49))).is_allowed());
}

#[test]
fn an_older_licence_version_is_refused_once_a_newer_one_was_opened_on_the_card() {
    let v1 = Limits::default();
    let v2 = limits("licence-version 2\n");
    let mut t = Tally::new(LIC);
    record(&mut t, open(), T0);
    assert!(evaluate(&v1, &t, &clock(T0)).is_allowed());
    record(
        &mut t,
        Usage::Renewal {
            licence: LIC,
            version: 2,
        },
        T0,
    );
    record(&mut t, open(), T0);
    assert_eq!(t.newest_version, 2);
    assert!(evaluate(&v2, &t, &clock(T0)).is_allowed());
    assert_eq!(t.opens, 2, "the use so far carries on into the renewal");
    let d = evaluate(&v1, &t, &clock(T0));
    assert_eq!(d.reason(), Some(&Reason::Superseded { newest: 2, this: 1 }));
    assert!(
        d.reason()
            .unwrap()
            .to_string()
            .starts_with("A newer version of this licence (version 2) has been used on this card")
    );
    // Another licence's renewal is not this one's.
    let mut other = Tally::new(OTHER);
    other.add(&Body {
        at: T0,
        usage: Usage::Renewal {
            licence: LIC,
            version: 9,
        },
    });
    assert!(evaluate(&v1, &other, &clock(T0)).is_allowed());
}

#[test]
fn the_licence_version_is_written_only_for_a_renewal() {
    assert!(!Limits::default().to_text().contains("licence-version"));
    let l = limits("licence-version 3\n");
    assert_eq!(l.licence_version, 3);
    assert!(l.to_text().contains("\nlicence-version 3\n"));
    assert_eq!(Limits::parse_canonical(l.to_text().as_bytes()), Ok(l));
    for bad in ["licence-version 0\n", "licence-version 1000001\n"] {
        assert!(Limits::parse(format!("tally-policy/1\n{bad}").as_bytes()).is_err());
    }
}
