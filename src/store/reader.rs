//! [`CoreReader`]: the drive format's view of a stored core (a [`BlockSource`]), so the
//! hyperdrive reader in `drive` never sees the store.

use std::sync::Arc;

use super::Core;
use crate::drive::{BlockSource, DriveError};

/// Reads a shared core block by block for the drive reader (through the block cache).
#[derive(Clone)]
pub struct CoreReader {
    core: Arc<Core>,
    length: u64,
}

impl CoreReader {
    /// A reader of the core as long as it is now.
    pub fn new(core: Arc<Core>) -> CoreReader {
        let length = core.info().length;
        CoreReader { core, length }
    }

    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }
}

impl BlockSource for CoreReader {
    fn length(&self) -> u64 {
        self.length
    }

    async fn block(&mut self, index: u64) -> Result<Option<Vec<u8>>, DriveError> {
        if index >= self.length {
            return Ok(None);
        }
        match self.core.get_cached(index).await {
            Ok(b) => Ok(b.map(|b| b.to_vec())),
            Err(e) => Err(DriveError::Storage(Box::new(e))),
        }
    }
}
