//! The online lookup without SQL: for a feature set whose event time is a
//! `timestamptz`, the latest current version of an entity at or before the
//! transaction's time is the first tuple a backward scan of the history's
//! partial unique index on (entity, event time) returns for
//! `entity = key AND event_time <= now()`; the TTL is then one comparison.
//! That is what the training set's `LATERAL (... ORDER BY event_time DESC
//! LIMIT 1)` computes, without an executor start and end per call, which
//! cost about 10 µs (`make bench`). Sets with another event time type are
//! looked up through SQL (`serve`), where the cross-type comparisons are
//! Postgres's own.
//!
//! It reads the history as the extension owner, under the statement's
//! snapshot, after the caller's right to be served the set was checked in
//! Rust (`Served::for_model`); table_open checks no privileges.

use std::ffi::CString;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::predict::{read_value, reader_for};
use crate::catalog::feature_sets::FeatureSet;
use crate::catalog::select_built;
use crate::error::{AmbientError, AmbientResult};
use crate::ml::preprocess::Value;

extern "C-unwind" {
    /// Postgres's `timestamptz - interval`, called through
    /// `DirectFunctionCall2Coll` (pgrx declares it as a Rust function,
    /// which fmgr cannot take).
    fn timestamptz_mi_interval(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
}

/// A value read from a history, owned, so the tuple it came from can go.
pub(super) enum Found {
    Missing,
    Number(f64),
    Text(String),
}

impl Found {
    pub(super) fn value(&self) -> Value<'_> {
        match self {
            Found::Missing => Value::Missing,
            Found::Number(n) => Value::Number(*n),
            Found::Text(t) => Value::Text(t),
        }
    }
}

/// An entity key as the index compares it.
struct Key {
    /// Position of the key among the plan's entity keys.
    position: usize,
    input: pg_sys::Oid,
    io_param: pg_sys::Oid,
    /// The btree equality function for (type, type), and the index
    /// column's collation.
    equal: pg_sys::Oid,
    collation: pg_sys::Oid,
}

/// A feature set as the direct lookup reads it.
pub(super) struct DirectSet {
    history: pg_sys::Oid,
    index: pg_sys::Oid,
    keys: Vec<Key>,
    /// The btree `<=` function for timestamptz.
    at_or_before: pg_sys::Oid,
    /// The event time's attribute number in the history.
    event_time: i32,
    /// (months, days, microseconds) of the TTL.
    ttl: Option<(i32, i32, i64)>,
    /// The features' attribute numbers in the history, in the lookup's
    /// order.
    features: Vec<i32>,
}

const TIMESTAMPTZ: &str = "timestamp with time zone";

impl DirectSet {
    /// The direct plan for `set` with its `features`, or `None` when its
    /// event time is not a timestamptz. `entity` is the plan's keys.
    pub(super) fn plan(
        set: &FeatureSet,
        features: &[&str],
        entity: &[String],
    ) -> AmbientResult<Option<DirectSet>> {
        if set.event_time_type != TIMESTAMPTZ {
            return Ok(None);
        }
        // The history's partial unique index on (entity, event time) of
        // its current versions, with each column's type, operator family
        // and collation.
        let found = select_built(
            "SELECT h.oid, i.indexrelid, a.attnum::int4, c.opcintype, c.opcfamily, i.indcollation[k.n - 1]
               FROM pg_catalog.pg_class h
               JOIN pg_catalog.pg_index i ON i.indrelid OPERATOR(pg_catalog.=) h.oid
                AND i.indisunique AND i.indisvalid AND i.indpred IS NOT NULL
              CROSS JOIN LATERAL pg_catalog.generate_series(1, i.indnkeyatts) AS k(n)
               JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) h.oid
                AND a.attnum OPERATOR(pg_catalog.=) i.indkey[k.n - 1]
               JOIN pg_catalog.pg_opclass c ON c.oid OPERATOR(pg_catalog.=) i.indclass[k.n - 1]
              WHERE h.oid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass::pg_catalog.oid
              ORDER BY k.n",
            &[set.history.as_str().into()],
            |rows| {
                (0..rows.len())
                    .map(|r| {
                        Ok((
                            rows.get::<pg_sys::Oid>(r, 1)?.unwrap_or_default(),
                            rows.get::<pg_sys::Oid>(r, 2)?.unwrap_or_default(),
                            rows.get::<i32>(r, 3)?.unwrap_or_default(),
                            rows.get::<pg_sys::Oid>(r, 4)?.unwrap_or_default(),
                            rows.get::<pg_sys::Oid>(r, 5)?.unwrap_or_default(),
                            rows.get::<pg_sys::Oid>(r, 6)?.unwrap_or_default(),
                        ))
                    })
                    .collect::<AmbientResult<Vec<_>>>()
            },
        )?;
        if found.len() != set.entity.len() + 1 {
            return Err(AmbientError::not_in_state(format!(
                "the history of feature set \"{}\" lacks its index on (entity, event time)",
                set.name
            )));
        }
        let (history, index) = (found[0].0, found[0].1);
        // The operator class's own input type on both sides (a varchar
        // column is compared as text, an enum as anyenum), as the planner
        // picks it; `None` when the family has none: then the set is read
        // through SQL.
        let operator = |family: pg_sys::Oid, class_type: pg_sys::Oid, strategy: u32| {
            // SAFETY: syscache lookups; InvalidOid when there is none.
            let function = unsafe {
                pg_sys::get_opcode(pg_sys::get_opfamily_member(
                    family,
                    class_type,
                    class_type,
                    strategy as i16,
                ))
            };
            (function != pg_sys::InvalidOid).then_some(function)
        };
        let mut keys = Vec::new();
        for (k, name) in set.entity.iter().enumerate() {
            let (_, _, attno, class_type, family, collation) = found[k];
            // SAFETY: syscache reads for a column and a type that exist.
            let type_oid = unsafe { pg_sys::get_atttype(history, attno as i16) };
            let (mut input, mut io_param) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
            // SAFETY: as above.
            unsafe { pg_sys::getTypeInputInfo(type_oid, &mut input, &mut io_param) };
            let Some(equal) = operator(family, class_type, pg_sys::BTEqualStrategyNumber) else {
                return Ok(None);
            };
            keys.push(Key {
                position: entity.iter().position(|e| e == name).unwrap_or(0),
                input,
                io_param,
                equal,
                collation,
            });
        }
        let (_, _, event_time, time_type, time_family, _) = found[set.entity.len()];
        let Some(at_or_before) =
            operator(time_family, time_type, pg_sys::BTLessEqualStrategyNumber)
        else {
            return Ok(None);
        };
        let ttl = match &set.ttl {
            None => None,
            Some(text) => {
                // Read-only, like every read of the predict path: a
                // read-write one would move the command counter, and the
                // backend's cache of what it served would never match.
                let interval = select_built(
                    "SELECT $1::pg_catalog.interval",
                    &[text.as_str().into()],
                    |rows| rows.get::<pgrx::datum::Interval>(0, 1),
                )?
                .ok_or_else(|| AmbientError::invalid("a feature set's TTL is NULL"))?;
                Some((interval.months(), interval.days(), interval.micros()))
            }
        };
        let attribute = |name: &str| {
            let c_name = CString::new(name)
                .map_err(|_| AmbientError::invalid("a feature name holds a NUL"))?;
            // SAFETY: a syscache lookup; InvalidAttrNumber when absent.
            let attno = unsafe { pg_sys::get_attnum(history, c_name.as_ptr()) };
            if attno <= 0 {
                return Err(AmbientError::undefined_column(format!(
                    "the history of feature set \"{}\" has no column \"{name}\"",
                    set.name
                )));
            }
            Ok(i32::from(attno))
        };
        Ok(Some(DirectSet {
            history,
            index,
            keys,
            at_or_before,
            event_time,
            ttl,
            features: features
                .iter()
                .map(|f| attribute(f))
                .collect::<AmbientResult<_>>()?,
        }))
    }

    /// Appends the entity's features valid now (or missing ones) to
    /// `found`, given the plan's keys as text.
    ///
    /// # Safety
    /// Must run inside a transaction with an active snapshot, as the
    /// extension owner.
    pub(super) unsafe fn lookup(
        &self,
        keys: &[Option<String>],
        found: &mut Vec<Found>,
    ) -> AmbientResult<()> {
        let missing = |found: &mut Vec<Found>| {
            found.extend(self.features.iter().map(|_| Found::Missing));
        };
        let mut scan_keys: Vec<pg_sys::ScanKeyData> = Vec::with_capacity(self.keys.len() + 1);
        // SAFETY: per the contract; every call is into Postgres's
        // relation, index and fmgr machinery, with the relations opened
        // and closed here and the slot dropped before returning.
        unsafe {
            for (k, key) in self.keys.iter().enumerate() {
                let Some(Some(text)) = keys.get(key.position) else {
                    missing(found);
                    return Ok(());
                };
                let text = CString::new(text.as_str())
                    .map_err(|_| AmbientError::invalid("an entity key holds a NUL"))?;
                let datum = pg_sys::OidInputFunctionCall(
                    key.input,
                    text.as_ptr().cast_mut(),
                    key.io_param,
                    -1,
                );
                scan_keys.push(pg_sys::ScanKeyData::default());
                pg_sys::ScanKeyEntryInitialize(
                    &mut scan_keys[k],
                    0,
                    (k + 1) as pg_sys::AttrNumber,
                    pg_sys::BTEqualStrategyNumber as u16,
                    // The operator class's own type on both sides.
                    pg_sys::InvalidOid,
                    key.collation,
                    key.equal,
                    datum,
                );
            }
            let now = pg_sys::GetCurrentTransactionStartTimestamp();
            scan_keys.push(pg_sys::ScanKeyData::default());
            let last = scan_keys.len() - 1;
            pg_sys::ScanKeyEntryInitialize(
                &mut scan_keys[last],
                0,
                scan_keys.len() as pg_sys::AttrNumber,
                pg_sys::BTLessEqualStrategyNumber as u16,
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
                self.at_or_before,
                pg_sys::Datum::from(now),
            );
            let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
            let heap = pg_sys::table_open(self.history, lock);
            let index = pg_sys::index_open(self.index, lock);
            let scan = pg_sys::index_beginscan(
                heap,
                index,
                pg_sys::GetActiveSnapshot(),
                scan_keys.len() as i32,
                0,
            );
            pg_sys::index_rescan(
                scan,
                scan_keys.as_mut_ptr(),
                scan_keys.len() as i32,
                std::ptr::null_mut(),
                0,
            );
            let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
            let read = if pg_sys::index_getnext_slot(
                scan,
                pg_sys::ScanDirection::BackwardScanDirection,
                slot,
            ) {
                self.read(slot, now)
            } else {
                Ok(None)
            };
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            pg_sys::index_endscan(scan);
            pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
            pg_sys::table_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
            match read? {
                Some(values) => found.extend(values),
                None => missing(found),
            }
        }
        Ok(())
    }

    /// The features of the version in `slot`, or `None` when it is older
    /// than the TTL at `now`.
    ///
    /// # Safety
    /// `slot` must hold a tuple of the history.
    unsafe fn read(
        &self,
        slot: *mut pg_sys::TupleTableSlot,
        now: pg_sys::TimestampTz,
    ) -> AmbientResult<Option<Vec<Found>>> {
        // SAFETY: per the contract; values are copied out before the slot
        // goes.
        unsafe {
            let mut is_null = false;
            if let Some((months, days, micros)) = self.ttl {
                let at = pg_sys::slot_getattr(slot, self.event_time, &mut is_null);
                let mut interval = pg_sys::Interval {
                    time: micros,
                    day: days,
                    month: months,
                };
                // now - ttl, as the training set's `s.at - ttl` computes it
                // (calendar months and days in the session's time zone).
                let oldest = pg_sys::DirectFunctionCall2Coll(
                    Some(timestamptz_mi_interval),
                    pg_sys::InvalidOid,
                    pg_sys::Datum::from(now),
                    pg_sys::Datum::from(&mut interval as *mut pg_sys::Interval),
                );
                let at = i64::from_datum(at, false).unwrap_or(i64::MIN);
                if is_null || at < i64::from_datum(oldest, false).unwrap_or(i64::MIN) {
                    return Ok(None);
                }
            }
            let descriptor = (*slot).tts_tupleDescriptor;
            let mut values = Vec::with_capacity(self.features.len());
            for &attno in &self.features {
                let datum = pg_sys::slot_getattr(slot, attno, &mut is_null);
                if is_null {
                    values.push(Found::Missing);
                    continue;
                }
                let attribute = (*descriptor).attrs.as_ptr().add(attno as usize - 1);
                let type_oid = (*attribute).atttypid;
                let reader = reader_for(type_oid).ok_or_else(|| {
                    AmbientError::wrong_type("a feature has a type predict cannot read")
                })?;
                values.push(match read_value(datum, type_oid, reader, "feature")? {
                    Value::Missing => Found::Missing,
                    Value::Number(n) => Found::Number(n),
                    Value::Text(t) => Found::Text(t.to_string()),
                });
            }
            Ok(Some(values))
        }
    }
}
