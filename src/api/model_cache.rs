//! Decoded models, kept per backend in an LRU bounded by
//! `ambient.model_cache_size`. Models are immutable rows, so an entry is
//! good for as long as the row's sha256 is the one it was decoded from.

use std::cell::RefCell;
use std::rc::Rc;

use lru::LruCache;

use crate::catalog::models;
use crate::error::{AmbientError, AmbientResult};
use crate::gucs;
use crate::ml::artifact;
use crate::ml::model::Model;

thread_local! {
    static CACHE: RefCell<LruCache<i64, (String, Rc<Model>)>> = RefCell::new(LruCache::unbounded());
}

/// The model with this id, whatever its sha256.
pub fn load(model_id: i64) -> AmbientResult<Rc<Model>> {
    let sha = models::sha256_of(model_id)?.ok_or_else(|| models::unknown(model_id))?;
    load_verified(model_id, &sha)
}

/// The model with this id, decoded from bytes whose sha256 is `sha`.
pub fn load_verified(model_id: i64, sha: &str) -> AmbientResult<Rc<Model>> {
    let cached = CACHE.with(|c| {
        c.borrow_mut()
            .get(&model_id)
            .filter(|(cached_sha, _)| cached_sha == sha)
            .map(|(_, model)| model.clone())
    });
    if let Some(model) = cached {
        return Ok(model);
    }
    let (bytes, stored_sha) = models::artifact(model_id)?;
    let model = Rc::new(artifact::decode_verified(&bytes, &stored_sha).map_err(|e| {
        AmbientError::from(e).hint(format!(
            "model {model_id} is damaged; drop it or restore it from a backup"
        ))
    })?);
    let capacity = gucs::model_cache_size();
    CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        if capacity > 0 {
            cache.put(model_id, (stored_sha, model.clone()));
        }
        while cache.len() > capacity {
            cache.pop_lru();
        }
    });
    Ok(model)
}

#[cfg(any(test, feature = "pg_test"))]
pub fn cached_models() -> usize {
    CACHE.with(|c| c.borrow().len())
}
