//! Firmware cache events: the packages an operator put into the firmware cache that
//! `firmware_upgrade` workflows install from. The stream is `firmware-<version>` of the
//! uploader's tenant; the cache's bytes live outside the event store. [`FirmwareEvent`] is the
//! stream's typed event enum.

use serde::{Deserialize, Serialize};

use crate::event::{EventType, event_enum};

/// A package was stored in the firmware cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwarePackageCached {
    /// RouterOS version.
    pub version: String,
    /// Package file name.
    pub file_name: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
}

impl EventType for FirmwarePackageCached {
    const TYPE: &'static str = "FirmwarePackageCached";
    const SCHEMA_VERSION: u32 = 1;
}

event_enum! {
    /// Every event of a firmware stream (`firmware-<version>`), by its stored type name.
    pub enum FirmwareEvent in "firmware" {
        /// `FirmwarePackageCached`.
        PackageCached(FirmwarePackageCached),
    }
}
