//! Streaming JSON for `extra_info`: a struct serialised without some fields and without the
//! fields that are null or empty lists.
//!
//! A large host's first sync encodes thousands of device records; going through
//! `serde_json::Value` to drop the empty fields cost more than the SQLite inserts, so the
//! pruning happens while serialising, by wrapping the serializer.

use std::fmt;

use serde::ser::{self, Impossible, Serialize, SerializeMap, SerializeStruct, Serializer};

/// `value` serialised as a map of its non-empty fields, minus `skip`.
pub(crate) struct Pruned<'a, T> {
    pub value: &'a T,
    pub skip: &'static [&'static str],
}

impl<T: Serialize> Serialize for Pruned<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(PruneSer {
            inner: s,
            skip: self.skip,
        })
    }
}

struct PruneSer<S> {
    inner: S,
    skip: &'static [&'static str],
}

struct PruneStruct<M> {
    map: M,
    skip: &'static [&'static str],
}

impl<M: SerializeMap> SerializeStruct for PruneStruct<M> {
    type Ok = M::Ok;
    type Error = M::Error;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), M::Error> {
        if self.skip.contains(&key) || is_empty(value) {
            return Ok(());
        }
        self.map.serialize_entry(key, value)
    }

    fn end(self) -> Result<M::Ok, M::Error> {
        self.map.end()
    }
}

fn only_structs<E: ser::Error>() -> E {
    E::custom("only a struct can be pruned")
}

macro_rules! refuse {
    ($($name:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $name(self, $(_: $arg),*) -> Result<Self::Ok, Self::Error> {
            Err(only_structs())
        })*
    };
}

impl<S: Serializer> Serializer for PruneSer<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Impossible<S::Ok, S::Error>;
    type SerializeTuple = Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = Impossible<S::Ok, S::Error>;
    type SerializeMap = Impossible<S::Ok, S::Error>;
    type SerializeStruct = PruneStruct<S::SerializeMap>;
    type SerializeStructVariant = Impossible<S::Ok, S::Error>;

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        Ok(PruneStruct {
            map: self.inner.serialize_map(None)?,
            skip: self.skip,
        })
    }

    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<S::Ok, S::Error> {
        Err(only_structs())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(only_structs())
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(only_structs())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        Err(only_structs())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, S::Error> {
        Err(only_structs())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        Err(only_structs())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        Err(only_structs())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        Err(only_structs())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        Err(only_structs())
    }
}

/// The probe's verdict when it stops early.
#[derive(Debug)]
enum Probe {
    Empty,
    NotEmpty,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Probe {}

impl ser::Error for Probe {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Probe::NotEmpty
    }
}

/// Whether a value serialises as null, unit or an empty list, without serialising it.
fn is_empty<T: ?Sized + Serialize>(value: &T) -> bool {
    match value.serialize(EmptyProbe) {
        Ok(empty) => empty,
        Err(Probe::Empty) => true,
        Err(Probe::NotEmpty) => false,
    }
}

struct EmptyProbe;

macro_rules! not_empty {
    ($($name:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $name(self, $(_: $arg),*) -> Result<bool, Probe> {
            Ok(false)
        })*
    };
}

impl Serializer for EmptyProbe {
    type Ok = bool;
    type Error = Probe;
    type SerializeSeq = Impossible<bool, Probe>;
    type SerializeTuple = Impossible<bool, Probe>;
    type SerializeTupleStruct = Impossible<bool, Probe>;
    type SerializeTupleVariant = Impossible<bool, Probe>;
    type SerializeMap = Impossible<bool, Probe>;
    type SerializeStruct = Impossible<bool, Probe>;
    type SerializeStructVariant = Impossible<bool, Probe>;

    fn serialize_none(self) -> Result<bool, Probe> {
        Ok(true)
    }
    fn serialize_unit(self) -> Result<bool, Probe> {
        Ok(true)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, Probe> {
        Err(if len == Some(0) {
            Probe::Empty
        } else {
            Probe::NotEmpty
        })
    }

    not_empty!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<bool, Probe> {
        Ok(false)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<bool, Probe> {
        Ok(false)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<bool, Probe> {
        Ok(false)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Probe> {
        Err(Probe::NotEmpty)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Probe> {
        Err(Probe::NotEmpty)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Probe> {
        Err(Probe::NotEmpty)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Probe> {
        Err(Probe::NotEmpty)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Probe> {
        Err(Probe::NotEmpty)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Probe> {
        Err(Probe::NotEmpty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcitrack_model::{DevType, Device, NetInterface};

    #[test]
    fn drops_skipped_null_and_empty_fields_and_keeps_the_rest() {
        let mut d = Device::new("0000:0a:00.1".parse().unwrap(), 0x8086, 0x154c, DevType::Vf);
        d.driver = Some("iavf".into());
        let json = serde_json::to_string(&Pruned {
            value: &d,
            skip: &["address", "vendor_id"],
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"product_id":"154c","class_code":"000000","driver":"iavf","dev_type":"type-VF"}"#
        );
        d.net.push(NetInterface {
            name: "ens1".into(),
            mac_address: None,
            phys_port_name: None,
            phys_switch_id: None,
        });
        let json = serde_json::to_string(&Pruned {
            value: &d,
            skip: &[],
        })
        .unwrap();
        assert!(json.contains(r#""net":[{"name":"ens1""#), "{json}");
    }
}
