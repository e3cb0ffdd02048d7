//! Every setting of the extension, all named `ambient.*`.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

static MODEL_CACHE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(16);

pub fn init() {
    GucRegistry::define_int_guc(
        c"ambient.model_cache_size",
        c"Decoded models each backend keeps for predict.",
        c"Least recently used models are dropped beyond this many. 0 turns the cache off.",
        &MODEL_CACHE_SIZE,
        0,
        10_000,
        GucContext::Userset,
        GucFlags::default(),
    );
}

pub fn model_cache_size() -> usize {
    MODEL_CACHE_SIZE.get().max(0) as usize
}
