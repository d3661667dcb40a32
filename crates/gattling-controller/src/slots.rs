//! A map from small dense ids to boxed values with O(1) lookup, so the radio's per-packet work
//! does not grow with the number of controllers or links. Ids are never reused: a removed entry
//! leaves an empty 8-byte slot, so a stale id (in a timer, say) can never reach a new entry.

use alloc::boxed::Box;
use alloc::vec::Vec;

/// An id usable as a slot index.
pub(crate) trait SlotKey: Copy {
    fn index(self) -> usize;
    fn from_index(i: usize) -> Self;
}

impl SlotKey for u32 {
    fn index(self) -> usize {
        self as usize
    }
    fn from_index(i: usize) -> Self {
        i as u32
    }
}

#[derive(Debug)]
pub(crate) struct Slots<K, T> {
    slots: Vec<Option<Box<T>>>,
    len: usize,
    _key: core::marker::PhantomData<K>,
}

impl<K: SlotKey, T> Slots<K, T> {
    pub(crate) fn new() -> Self {
        Self { slots: Vec::new(), len: 0, _key: core::marker::PhantomData }
    }

    pub(crate) fn insert(&mut self, key: K, value: T) {
        let i = key.index();
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        if let Some(slot) = self.slots.get_mut(i) {
            if slot.is_none() {
                self.len += 1;
            }
            *slot = Some(Box::new(value));
        }
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<T> {
        let v = self.slots.get_mut(key.index())?.take()?;
        self.len -= 1;
        Some(*v)
    }

    pub(crate) fn get(&self, key: &K) -> Option<&T> {
        self.slots.get(key.index())?.as_deref()
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut T> {
        self.slots.get_mut(key.index())?.as_deref_mut()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (K, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.as_deref().map(|v| (K::from_index(i), v)))
    }
}
