//! Bounded property-list parsing.
//!
//! The `plist` crate detects binary, XML and ASCII plists, but a binary plist may reference one
//! object many times, and the crate expands every reference: a few hundred bytes can describe
//! billions of values. Here its event stream is consumed with a budget of objects and a depth
//! limit, and the tree is built from the events, so work is bounded by [`Limits`].

use std::io::Cursor;

use plist::stream::{Event, Reader};
use plist::{Dictionary, Value};

use crate::error::{IpaError, Result};
use crate::limits::{Budget, Limits};

/// Parses `bytes` as a property list of any format within the limits. `what` names the file
/// in error messages ("Payload/App.app/Info.plist").
///
/// Every string, key and data value spends its length (plus a little for the value itself)
/// from `budget`, so a binary plist that references one large string many times is refused
/// before it fills memory.
pub fn parse(bytes: &[u8], limits: &Limits, budget: &Budget, what: &str) -> Result<Value> {
    let mut events = Reader::new(Cursor::new(bytes));
    let mut stack: Vec<Container> = Vec::new();
    let mut objects = limits.max_plist_objects;
    let too_complex = || IpaError::PlistTooComplex { what: what.to_owned(), limit: limits.max_plist_objects };
    let malformed = |detail: String| IpaError::MalformedPlist { what: what.to_owned(), detail };
    loop {
        let event = match events.next() {
            Some(Ok(event)) => event,
            Some(Err(error)) => return Err(malformed(error.to_string())),
            None => return Err(malformed("it ends before its root object is complete".to_owned())),
        };
        objects = objects.checked_sub(1).ok_or_else(too_complex)?;
        let payload = match &event {
            Event::String(text) => text.len() as u64,
            Event::Data(data) => data.len() as u64,
            _ => 0,
        };
        budget.spend(payload + 16)?;
        let value = match event {
            Event::StartArray(_) | Event::StartDictionary(_) => {
                if stack.len() >= limits.max_plist_depth {
                    return Err(too_complex());
                }
                stack.push(match event {
                    Event::StartArray(_) => Container::Array(Vec::new()),
                    _ => Container::Dictionary(Dictionary::new(), None),
                });
                continue;
            }
            Event::EndCollection => match stack.pop() {
                Some(Container::Array(items)) => Value::Array(items),
                Some(Container::Dictionary(dict, None)) => Value::Dictionary(dict),
                Some(Container::Dictionary(_, Some(_))) => {
                    return Err(malformed("a dictionary key has no value".to_owned()));
                }
                None => return Err(malformed("a collection ends that never started".to_owned())),
            },
            Event::Boolean(value) => Value::Boolean(value),
            Event::Data(value) => Value::Data(value.into_owned()),
            Event::Date(value) => Value::Date(value),
            Event::Integer(value) => Value::Integer(value),
            Event::Real(value) => Value::Real(value),
            Event::String(value) => Value::String(value.into_owned()),
            Event::Uid(value) => Value::Uid(value),
            _ => return Err(malformed("it holds an unknown kind of value".to_owned())),
        };
        match stack.last_mut() {
            None => return Ok(value),
            Some(Container::Array(items)) => items.push(value),
            Some(Container::Dictionary(dict, pending)) => match pending.take() {
                Some(key) => {
                    dict.insert(key, value);
                }
                None => match value {
                    Value::String(key) => *pending = Some(key),
                    _ => return Err(malformed("a dictionary key is not a string".to_owned())),
                },
            },
        }
    }
}

/// Parses a plist whose root must be a dictionary.
pub fn parse_dictionary(bytes: &[u8], limits: &Limits, budget: &Budget, what: &str) -> Result<Dictionary> {
    match parse(bytes, limits, budget, what)? {
        Value::Dictionary(dict) => Ok(dict),
        _ => Err(IpaError::MalformedPlist { what: what.to_owned(), detail: "its root is not a dictionary".to_owned() }),
    }
}

enum Container {
    Array(Vec<Value>),
    /// A dictionary and the key waiting for its value.
    Dictionary(Dictionary, Option<String>),
}

/// Typed access to dictionary keys with errors that name the file and key.
pub(crate) struct Keys<'a> {
    pub dict: &'a Dictionary,
    pub what: &'a str,
}

impl<'a> Keys<'a> {
    pub fn optional_string(&self, key: &'static str) -> Result<Option<&'a str>> {
        match self.dict.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.as_str())),
            Some(_) => Err(self.wrong_type(key, "a string")),
        }
    }

    pub fn required_string(&self, key: &'static str) -> Result<&'a str> {
        self.optional_string(key)?.ok_or_else(|| IpaError::MissingKey { what: self.what.to_owned(), key })
    }

    pub fn optional_bool(&self, key: &'static str) -> Result<Option<bool>> {
        match self.dict.get(key) {
            None => Ok(None),
            Some(Value::Boolean(value)) => Ok(Some(*value)),
            Some(_) => Err(self.wrong_type(key, "a boolean")),
        }
    }

    pub fn optional_array(&self, key: &'static str) -> Result<Option<&'a [Value]>> {
        match self.dict.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items.as_slice())),
            Some(_) => Err(self.wrong_type(key, "an array")),
        }
    }

    pub fn optional_dict(&self, key: &'static str) -> Result<Option<&'a Dictionary>> {
        match self.dict.get(key) {
            None => Ok(None),
            Some(Value::Dictionary(dict)) => Ok(Some(dict)),
            Some(_) => Err(self.wrong_type(key, "a dictionary")),
        }
    }

    /// An array of strings; any other element type is an error.
    pub fn string_array(&self, key: &'static str) -> Result<Vec<&'a str>> {
        self.optional_array(key)?
            .unwrap_or_default()
            .iter()
            .map(|item| item.as_string().ok_or_else(|| self.wrong_type(key, "an array of strings")))
            .collect()
    }

    pub fn wrong_type(&self, key: &'static str, expected: &'static str) -> IpaError {
        IpaError::WrongType { what: self.what.to_owned(), key, expected }
    }
}
