//! Creating, configuring and removing cores: writers (compat, default or custom manifest),
//! replicas (by key, with or without a manifest), learning a manifest later (e.g. a
//! hyperdrive 13 blobs core's, derived from its db core), and removing a core with its data.

use std::fs;

use super::records::{CoreMeta, BLOCKS, CORES, JOURNAL, META, NODES};
use super::{db_err, open, Bitfield, CoreKind, Store};
use crate::crypto::KeyPair;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::verifier::Verifier;

impl Store {
    /// Creates a core this store writes to (idempotent for the same key pair and kind).
    pub fn create_writer(&self, key_pair: &KeyPair, kind: CoreKind) -> Result<[u8; 32]> {
        let secret = key_pair.secret_key().ok_or(Error::NotWritable)?;
        let (key, manifest) = match kind {
            CoreKind::Compat => (
                key_pair.public_key,
                Some(Manifest::single_signer(key_pair.public_key)),
            ),
            CoreKind::Default => {
                let m = Manifest::single_signer(key_pair.public_key);
                (m.hash()?, Some(m))
            }
            CoreKind::Manifest(m) => {
                m.validate()?;
                if !m
                    .signers
                    .iter()
                    .any(|s| s.public_key == key_pair.public_key)
                {
                    return Err(Error::NotWritable);
                }
                (m.hash()?, Some(m))
            }
        };
        if let Some(c) = self.lock().cores.get(&key) {
            return if c.key_pair.is_some() {
                Ok(key)
            } else {
                Err(Error::CoreExists)
            };
        }
        self.insert_core(key, manifest, Some(secret.to_vec()))?;
        Ok(key)
    }

    /// Opens (creating if needed) a replica of `key`; `manifest`, when given, must belong
    /// to the key (compat cores may have none).
    pub fn open_replica(&self, key: [u8; 32], manifest: Option<Manifest>) -> Result<()> {
        if let Some(m) = &manifest {
            if !m.matches_key(&key)? {
                return Err(Error::InvalidManifest(
                    "manifest does not belong to the key",
                ));
            }
        }
        let known = self
            .lock()
            .cores
            .get(&key)
            .map(|c| c.meta.manifest.is_some());
        match (known, manifest) {
            (None, manifest) => self.insert_core(key, manifest, None),
            (Some(false), Some(m)) => self.set_manifest(key, m),
            (Some(_), _) => Ok(()),
        }
    }

    fn insert_core(
        &self,
        key: [u8; 32],
        manifest: Option<Manifest>,
        secret: Option<Vec<u8>>,
    ) -> Result<()> {
        let _writer = self.writer_lock();
        let id = {
            let state = self.lock();
            if state.cores.contains_key(&key) {
                return Ok(());
            }
            state.next_id
        };
        let meta = CoreMeta {
            key,
            manifest,
            secret_key: secret,
            length: 0,
            byte_length: 0,
            fork: 0,
            signature: None,
            data_end: 0,
            journal_bytes: 0,
        };
        let core = open::core_state(
            &self.shared.dir,
            id,
            meta.clone(),
            Vec::new(),
            Bitfield::new(),
        )?;
        self.durable_write(|wtx| {
            let mut cores = wtx.open_table(CORES).map_err(db_err)?;
            cores.insert(&key, id).map_err(db_err)?;
            let mut metas = wtx.open_table(META).map_err(db_err)?;
            metas
                .insert(id, meta.encode()?.as_slice())
                .map_err(db_err)?;
            Ok(())
        })?;
        let mut state = self.lock();
        state.next_id = id + 1;
        state.cores.insert(key, core);
        Ok(())
    }

    /// Records the manifest of a core that has none yet (it must belong to the key).
    pub fn set_manifest(&self, key: [u8; 32], manifest: Manifest) -> Result<()> {
        if !manifest.matches_key(&key)? {
            return Err(Error::InvalidManifest(
                "manifest does not belong to the key",
            ));
        }
        let _writer = self.writer_lock();
        let mut core = self
            .lock()
            .cores
            .get(&key)
            .ok_or(Error::UnknownCore)?
            .clone();
        if core.meta.manifest.is_some() {
            return Ok(());
        }
        core.verifier = Verifier::new(&key, Some(&manifest))?;
        core.meta.manifest = Some(manifest);
        self.durable_write(|wtx| {
            let mut metas = wtx.open_table(META).map_err(db_err)?;
            metas
                .insert(core.id, core.meta.encode()?.as_slice())
                .map_err(db_err)?;
            Ok(())
        })?;
        self.lock().cores.insert(key, core);
        Ok(())
    }

    /// Removes a core: its records in one commit, then its data file. Idempotent.
    pub fn remove_core(&self, key: &[u8; 32]) -> Result<()> {
        let _writer = self.writer_lock();
        let Some(core) = self.lock().cores.get(key).cloned() else {
            return Ok(());
        };
        let id = core.id;
        self.durable_write(|wtx| {
            wtx.open_table(CORES)
                .map_err(db_err)?
                .remove(key)
                .map_err(db_err)?;
            wtx.open_table(META)
                .map_err(db_err)?
                .remove(id)
                .map_err(db_err)?;
            wtx.open_table(NODES)
                .map_err(db_err)?
                .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                .map_err(db_err)?;
            wtx.open_table(BLOCKS)
                .map_err(db_err)?
                .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                .map_err(db_err)?;
            wtx.open_table(JOURNAL)
                .map_err(db_err)?
                .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                .map_err(db_err)?;
            Ok(())
        })?;
        self.lock().cores.remove(key);
        match fs::remove_file(&core.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&core.path, e)),
        }
    }
}

impl Store {
    /// Re-reads and re-hashes every held block of a core; blocks whose bytes no longer match
    /// their tree node are dropped (one commit) so replication can fetch them again.
    /// Returns the dropped indices.
    pub fn scrub(&self, key: &[u8; 32]) -> Result<Vec<u64>> {
        let _writer = self.writer_lock();
        let (core, rtx) = {
            let state = self.lock();
            let c = state.cores.get(key).ok_or(Error::UnknownCore)?.clone();
            (c, self.begin_read()?)
        };
        let nodes = rtx.open_table(NODES).map_err(db_err)?;
        let blocks = rtx.open_table(BLOCKS).map_err(db_err)?;
        let src = super::DbNodes {
            table: &nodes,
            id: core.id,
        };
        let mut bad = Vec::new();
        for (start, end) in core.bitfield.ranges(core.meta.length) {
            for i in start..end {
                if super::read_verified(&blocks, &src, &core.file, core.id, i).is_err() {
                    bad.push(i);
                }
            }
        }
        if bad.is_empty() {
            return Ok(bad);
        }
        self.durable_write(|wtx| {
            let mut t = wtx.open_table(BLOCKS).map_err(db_err)?;
            for i in &bad {
                t.remove((core.id, *i)).map_err(db_err)?;
            }
            Ok(())
        })?;
        let mut state = self.lock();
        if let Some(c) = state.cores.get_mut(key) {
            for i in &bad {
                c.bitfield.clear(*i);
            }
        }
        Ok(bad)
    }
}
