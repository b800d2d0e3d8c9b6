//! Forgetting a device's counters in the pinned classifier maps (the
//! inventory part is `Inventory::forget`).

use std::path::Path;

use aya::{
    maps::{Map, MapData, PerCpuArray, PerCpuValues},
    util::nr_cpus,
};
use moat_common::{maps as m, DeviceStats};

/// Zeroes device `id`'s per-CPU counters in the pinned `DEVICE_STATS`;
/// `Ok(false)` when nothing is pinned.
pub fn zero_pinned_counters(pin_dir: &Path, id: u32) -> Result<bool, String> {
    let path = crate::pins::versioned(pin_dir).join(m::DEVICE_STATS);
    if !path.exists() {
        return Ok(false);
    }
    let data = MapData::from_pin(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut stats: PerCpuArray<MapData, DeviceStats> =
        PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(|e| e.to_string())?;
    let cpus = nr_cpus().map_err(|(_, e)| e.to_string())?;
    let zeros = PerCpuValues::try_from(vec![DeviceStats::default(); cpus]).map_err(|e| e.to_string())?;
    stats.set(id, zeros, 0).map_err(|e| e.to_string())?;
    Ok(true)
}
