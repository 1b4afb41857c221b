//! The emulator's in-memory Customer store and the rules of each endpoint, as pure functions
//! of a request body. Follows `docs/integrators/explo-api.md` §3; where the docs are silent the
//! choice is written next to the code (and in docs/integrators/emulator.md).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::hierarchy::HierarchyLevels;

/// The Data Visibility Group every emulated token belongs to.
pub const ACCESS_GROUP: &str = "Production";
/// The v2 list's largest page, in customers (explo-api.md §3.5: `page_size` max 1000).
pub const V2_MAX_PAGE_SIZE: usize = 1000;

/// A reply: HTTP status and JSON body.
pub type Reply = (u16, Value);

#[derive(Debug, Clone, PartialEq)]
struct Customer {
    token: String,
    name: Value,
    provided_id: String,
    is_demo_group: bool,
    emails: Value,
    group_tags: Value,
    hierarchy_level: usize,
    properties: Map<String, Value>,
    mapping: Map<String, Value>,
    parent: Option<String>,
}

/// All customers, by `provided_id`, and the team's hierarchy levels.
#[derive(Debug, Default)]
pub struct Store {
    customers: BTreeMap<String, Customer>,
    next_token: u64,
    levels: HierarchyLevels,
}

pub(super) fn error(status: u16, message: impl Into<String>) -> Reply {
    (status, json!({"success": 0, "error": message.into()}))
}

fn string_field<'a>(body: &'a Value, key: &str) -> Result<Option<&'a str>, Reply> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(error(400, format!("`{key}` must be a string"))),
    }
}

fn required_string<'a>(body: &'a Value, key: &str) -> Result<&'a str, Reply> {
    string_field(body, key)?
        .filter(|text| !text.is_empty())
        .ok_or_else(|| error(400, format!("`{key}` is required")))
}

fn object_field(body: &Value, key: &str) -> Result<Option<Map<String, Value>>, Reply> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map.clone())),
        Some(_) => Err(error(400, format!("`{key}` must be an object"))),
    }
}

fn string_list(body: &Value, key: &str) -> Result<Option<Value>, Reply> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Ok(Some(Value::Array(items.clone())))
        }
        Some(_) => Err(error(400, format!("`{key}` must be a list of strings"))),
    }
}

impl Store {
    /// An empty store for a team with these hierarchy levels.
    pub fn with_levels(levels: HierarchyLevels) -> Self {
        Self {
            levels,
            ..Self::default()
        }
    }

    fn new_token(&mut self) -> String {
        self.next_token += 1;
        // Deterministic per store, unique, and 64 hex digits like the docs' placeholders.
        format!(
            "{:016x}{:048x}",
            self.next_token,
            self.next_token.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        )
    }

    fn by_token(&self, token: &str) -> Option<&Customer> {
        self.customers
            .values()
            .find(|customer| customer.token == token)
    }

    /// The customer with every inherited field filled in (§3.0).
    fn view(&self, customer: &Customer) -> Value {
        let mut computed_properties = Map::new();
        let mut computed_mapping = Map::new();
        for ancestor in self.lineage(customer).iter().rev() {
            computed_properties.extend(ancestor.properties.clone());
            computed_mapping.extend(ancestor.mapping.clone());
        }
        json!({
            "token": customer.token,
            "name": customer.name,
            "provided_id": customer.provided_id,
            "is_demo_group": customer.is_demo_group,
            "emails": customer.emails,
            "group_tags": customer.group_tags,
            "properties": customer.properties,
            "computed_properties": computed_properties,
            "access_group": ACCESS_GROUP,
            "parent_schema_datasource_mapping": customer.mapping,
            "computed_parent_schema_datasource_mapping": computed_mapping,
            "hierarchy_level": self.levels.name(customer.hierarchy_level),
        })
    }

    /// The customer, its parent, its grandparent, ... (nearest first).
    fn lineage<'a>(&'a self, customer: &'a Customer) -> Vec<&'a Customer> {
        let mut chain = vec![customer];
        let mut next = customer.parent.as_deref();
        while let Some(parent) = next.and_then(|id| self.customers.get(id)) {
            if chain
                .iter()
                .any(|seen| seen.provided_id == parent.provided_id)
            {
                break;
            }
            chain.push(parent);
            next = parent.parent.as_deref();
        }
        chain
    }

    /// Checks a parent assignment: it exists and sits strictly higher than `level`. The docs
    /// (get-or-create, `parent_provided_id`): "Parents must also be at a strictly higher
    /// hierarchy level than their children". So a customer at the top level has no parent (the
    /// Customer Hierarchy page's example leaves the top one's parent at "None"), and nothing
    /// sits under the lowest level. Both are refused like any other invalid hierarchy input,
    /// 400 `{"success": 0, "error"}`: the docs give no status or body for them (§1.4).
    fn check_parent(&self, parent: &str, level: usize, child: &str) -> Result<(), Reply> {
        if parent == child {
            return Err(error(400, "a customer cannot be its own parent"));
        }
        if level == 0 {
            return Err(error(
                400,
                format!(
                    "a customer at the top hierarchy level `{}` cannot have a parent; set \
                     hierarchy_level_name to a level below the parent's (levels, highest first: {:?})",
                    self.levels.name(0),
                    self.levels.names()
                ),
            ));
        }
        let Some(parent_customer) = self.customers.get(parent) else {
            return Err(error(
                400,
                format!("parent customer `{parent}` does not exist"),
            ));
        };
        if parent_customer.hierarchy_level == self.levels.lowest() {
            return Err(error(
                400,
                format!(
                    "the parent `{parent}` is at the lowest hierarchy level `{}`; no customer \
                     can sit under it",
                    self.levels.name(parent_customer.hierarchy_level)
                ),
            ));
        }
        if parent_customer.hierarchy_level >= level {
            return Err(error(
                400,
                format!(
                    "the parent `{parent}` must be at a higher hierarchy level than the customer; set hierarchy_level_name"
                ),
            ));
        }
        Ok(())
    }

    /// `POST /api/create_customer/`: get-or-create. An existing customer is returned as it
    /// is; the other fields are ignored, as the legacy docs said of user groups.
    pub fn create(&mut self, body: &Value) -> Result<Reply, Reply> {
        let provided_id = required_string(body, "provided_id")?;
        if let Some(existing) = self.customers.get(provided_id) {
            return Ok((
                200,
                json!({"success": 1, "new_customer": false, "customer": self.view(existing)}),
            ));
        }
        let level = match string_field(body, "hierarchy_level_name")? {
            Some(name) => self.levels.index(name)?,
            None => 0,
        };
        let parent = string_field(body, "parent_provided_id")?.map(str::to_owned);
        if let Some(parent) = &parent {
            self.check_parent(parent, level, provided_id)?;
        }
        let customer = Customer {
            token: self.new_token(),
            name: body.get("name").cloned().unwrap_or(Value::Null),
            provided_id: provided_id.to_owned(),
            is_demo_group: body
                .get("is_demo_group")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            emails: string_list(body, "emails")?.unwrap_or(json!([])),
            group_tags: string_list(body, "group_tags")?.unwrap_or(json!([])),
            hierarchy_level: level,
            properties: object_field(body, "properties")?.unwrap_or_default(),
            mapping: object_field(body, "mapping")?.unwrap_or_default(),
            parent,
        };
        let view = self.view(&customer);
        self.customers
            .insert(customer.provided_id.clone(), customer);
        Ok((
            200,
            json!({"success": 1, "new_customer": true, "customer": view}),
        ))
    }

    /// `POST /api/update_customer/`: only the fields sent change; `properties`, `mapping`,
    /// `emails` and `group_tags` are replaced, not merged; `new_provided_id` renames.
    pub fn update(&mut self, body: &Value) -> Result<Reply, Reply> {
        let provided_id = required_string(body, "provided_id")?;
        let Some(mut customer) = self.customers.get(provided_id).cloned() else {
            return Err(error(404, format!("customer `{provided_id}` not found")));
        };
        if let Some(name) = body.get("name") {
            customer.name = name.clone();
        }
        if let Some(flag) = body.get("is_demo_group").and_then(Value::as_bool) {
            customer.is_demo_group = flag;
        }
        if let Some(properties) = object_field(body, "properties")? {
            customer.properties = properties;
        }
        if let Some(mapping) = object_field(body, "mapping")? {
            customer.mapping = mapping;
        }
        if let Some(emails) = string_list(body, "emails")? {
            customer.emails = emails;
        }
        if let Some(tags) = string_list(body, "group_tags")? {
            customer.group_tags = tags;
        }
        if let Some(level) = string_field(body, "hierarchy_level_name")? {
            customer.hierarchy_level = self.levels.index(level)?;
        }
        if let Some(parent) = string_field(body, "parent_provided_id")? {
            customer.parent = Some(parent.to_owned());
        }
        if let Some(parent) = customer.parent.clone() {
            self.check_parent(&parent, customer.hierarchy_level, provided_id)?;
        }
        // A new level must keep the customer strictly above its children, or a child would
        // end up under a customer at its own level or lower (under a `User`, say).
        if let Some(child) = self.customers.values().find(|c| {
            c.parent.as_deref() == Some(provided_id)
                && c.hierarchy_level <= customer.hierarchy_level
        }) {
            return Err(error(
                400,
                format!(
                    "`{provided_id}` cannot move to hierarchy level `{}`: its child `{}` is at \
                     `{}`, and a parent must be at a strictly higher level",
                    self.levels.name(customer.hierarchy_level),
                    child.provided_id,
                    self.levels.name(child.hierarchy_level)
                ),
            ));
        }
        if let Some(new_id) = string_field(body, "new_provided_id")?.filter(|id| *id != provided_id)
        {
            if self.customers.contains_key(new_id) {
                return Err(error(400, format!("a customer `{new_id}` already exists")));
            }
            self.customers.remove(provided_id);
            for child in self
                .customers
                .values_mut()
                .filter(|c| c.parent.as_deref() == Some(provided_id))
            {
                child.parent = Some(new_id.to_owned());
            }
            customer.provided_id = new_id.to_owned();
        }
        let view = self.view(&customer);
        self.customers
            .insert(customer.provided_id.clone(), customer);
        Ok((200, json!({"success": 1, "customer": view})))
    }

    /// `POST /api/get_customer/`.
    pub fn get(&self, body: &Value) -> Result<Reply, Reply> {
        let provided_id = required_string(body, "provided_id")?;
        let customer = self
            .customers
            .get(provided_id)
            .ok_or_else(|| error(404, format!("customer `{provided_id}` not found")))?;
        Ok((200, json!({"success": 1, "customer": self.view(customer)})))
    }

    /// `DELETE /api/delete_customer/`: the customer and every descendant.
    pub fn delete(&mut self, body: &Value) -> Result<Reply, Reply> {
        let token = required_string(body, "current_token")?;
        let root = self
            .by_token(token)
            .map(|customer| customer.provided_id.clone())
            .ok_or_else(|| error(404, "no customer has this token"))?;
        let mut doomed = vec![root];
        let mut index = 0;
        while index < doomed.len() {
            let parent = doomed[index].clone();
            doomed.extend(
                self.customers
                    .values()
                    .filter(|c| c.parent.as_deref() == Some(parent.as_str()))
                    .map(|c| c.provided_id.clone())
                    .filter(|id| !doomed.contains(id))
                    .collect::<Vec<_>>(),
            );
            index += 1;
        }
        for id in &doomed {
            self.customers.remove(id);
        }
        Ok((200, json!({"success": 1})))
    }

    /// `POST /api/refresh_customer_token/`.
    pub fn refresh_token(&mut self, body: &Value) -> Result<Reply, Reply> {
        let token = required_string(body, "current_token")?;
        let provided_id = self
            .by_token(token)
            .map(|customer| customer.provided_id.clone())
            .ok_or_else(|| error(404, "no customer has this token"))?;
        let fresh = self.new_token();
        let customer = self
            .customers
            .get_mut(&provided_id)
            .ok_or_else(|| error(404, "customer vanished"))?;
        customer.token = fresh;
        let customer = customer.clone();
        Ok((200, json!({"success": 1, "customer": self.view(&customer)})))
    }

    /// The customers matching the list filters.
    fn filtered(&self, query: &BTreeMap<String, String>) -> Result<Vec<Value>, Reply> {
        let parent = query
            .get("parent_provided_id")
            .or_else(|| query.get("parentProvidedId"));
        let level = query
            .get("hierarchy_level_name")
            .or_else(|| query.get("hierarchyLevelName"));
        let level = level.map(|name| self.levels.index(name)).transpose()?;
        Ok(self
            .customers
            .values()
            .filter(|c| parent.is_none_or(|p| c.parent.as_deref() == Some(p.as_str())))
            .filter(|c| level.is_none_or(|l| c.hierarchy_level == l))
            .map(|c| self.view(c))
            .collect())
    }

    /// `GET /api/customers/` (v1).
    pub fn list(&self, query: &BTreeMap<String, String>) -> Result<Reply, Reply> {
        Ok((
            200,
            json!({"success": 1, "customers": self.filtered(query)?}),
        ))
    }

    /// `GET /v2/api/customers/` (v2, the latest doc version's envelope). A `page_size` above
    /// `max_page_size` (customers) is served `max_page_size` a page, as a paginator with a
    /// maximum does; pages are numbered in pages of the size served.
    pub fn list_v2(
        &self,
        query: &BTreeMap<String, String>,
        max_page_size: usize,
    ) -> Result<Reply, Reply> {
        let number = |keys: [&str; 2], default: usize| -> Result<usize, Reply> {
            match keys.iter().find_map(|key| query.get(*key)) {
                None => Ok(default),
                Some(text) => text
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| error(400, format!("`{}` must be a positive integer", keys[0]))),
            }
        };
        let page = number(["page", "page"], 1)?;
        let page_size = number(["page_size", "pageSize"], 20)?.min(max_page_size);
        let all = self.filtered(query)?;
        let total = all.len();
        let customers: Vec<Value> = all
            .into_iter()
            .skip((page - 1) * page_size)
            .take(page_size)
            .collect();
        Ok((
            200,
            json!({"total_count": total, "results": {"customers": customers}}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::hierarchy::DEFAULT_HIERARCHY_LEVELS;
    use super::*;

    fn ok(reply: Result<Reply, Reply>) -> Value {
        let (status, body) = reply.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(status, 200);
        body
    }

    fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn three_levels() -> HierarchyLevels {
        HierarchyLevels::new(["Region", "Customer", "User"]).unwrap()
    }

    /// The status and message of a refusal.
    fn refused(reply: Result<Reply, Reply>) -> (u16, String) {
        let (status, body) = reply.expect_err("refused");
        assert_eq!(body["success"], 0);
        (status, body["error"].as_str().unwrap().to_owned())
    }

    #[test]
    fn default_levels_are_customer_over_user_and_new_customers_are_customers() {
        let mut store = Store::default();
        let org = ok(store.create(&json!({"provided_id": "org"})));
        assert_eq!(org["customer"]["hierarchy_level"], "Customer");
        let user = ok(store.create(
            &json!({"provided_id": "alice", "parent_provided_id": "org", "hierarchy_level_name": "User"}),
        ));
        assert_eq!(user["customer"]["hierarchy_level"], "User");
        let users = ok(store.list(&query(&[("hierarchy_level_name", "User")])));
        assert_eq!(users["customers"][0]["provided_id"], "alice");
    }

    #[test]
    fn a_level_below_user_or_the_old_level_names_do_not_exist() {
        let mut store = Store::default();
        ok(store.create(&json!({"provided_id": "org"})));
        for name in ["Level 1", "Level 2", "Player"] {
            let (status, message) = refused(store.create(
                &json!({"provided_id": "x", "parent_provided_id": "org", "hierarchy_level_name": name}),
            ));
            assert_eq!(status, 400);
            assert!(message.contains("does not exist"), "{message}");
            assert!(message.contains(r#"["Customer", "User"]"#), "{message}");
        }
    }

    #[test]
    fn nothing_is_created_under_a_user() {
        let mut store = Store::default();
        ok(store.create(&json!({"provided_id": "org"})));
        ok(store.create(
            &json!({"provided_id": "alice", "parent_provided_id": "org", "hierarchy_level_name": "User"}),
        ));
        let (status, message) = refused(store.create(
            &json!({"provided_id": "bob", "parent_provided_id": "alice", "hierarchy_level_name": "User"}),
        ));
        assert_eq!(status, 400);
        assert!(
            message.contains("lowest hierarchy level `User`"),
            "{message}"
        );
        assert_eq!(
            store.get(&json!({"provided_id": "bob"})).unwrap_err().0,
            404
        );
    }

    #[test]
    fn a_top_level_customer_has_no_parent() {
        let mut store = Store::default();
        ok(store.create(&json!({"provided_id": "org"})));
        for body in [
            json!({"provided_id": "c", "parent_provided_id": "org"}),
            json!({"provided_id": "c", "parent_provided_id": "org", "hierarchy_level_name": "Customer"}),
        ] {
            let (status, message) = refused(store.create(&body));
            assert_eq!(status, 400);
            assert!(
                message.contains("top hierarchy level `Customer` cannot have a parent"),
                "{message}"
            );
        }
        ok(store.create(&json!({"provided_id": "other"})));
        let (status, _) =
            refused(store.update(&json!({"provided_id": "other", "parent_provided_id": "org"})));
        assert_eq!(status, 400);
    }

    #[test]
    fn nothing_is_moved_under_a_user_by_update() {
        let mut store = Store::default();
        ok(store.create(&json!({"provided_id": "org"})));
        ok(store.create(&json!({"provided_id": "other_org"})));
        for id in ["alice", "bob"] {
            ok(store.create(
                &json!({"provided_id": id, "parent_provided_id": "org", "hierarchy_level_name": "User"}),
            ));
        }
        // Re-parenting a user under a user.
        let (status, message) =
            refused(store.update(&json!({"provided_id": "bob", "parent_provided_id": "alice"})));
        assert_eq!(status, 400);
        assert!(
            message.contains("lowest hierarchy level `User`"),
            "{message}"
        );
        // Moving a customer down to `User` under a user.
        let (status, _) = refused(store.update(&json!({"provided_id": "other_org",
            "hierarchy_level_name": "User", "parent_provided_id": "alice"})));
        assert_eq!(status, 400);
        // Moving a customer with users down to `User` would put them under a user.
        let (status, message) = refused(store.update(&json!({"provided_id": "org",
            "hierarchy_level_name": "User", "parent_provided_id": "other_org"})));
        assert_eq!(status, 400);
        assert!(
            message.contains("its child `alice` is at `User`"),
            "{message}"
        );
        let org = ok(store.get(&json!({"provided_id": "org"})));
        assert_eq!(org["customer"]["hierarchy_level"], "Customer", "unchanged");
        // Moving a user to another customer is fine.
        let moved =
            ok(store.update(&json!({"provided_id": "bob", "parent_provided_id": "other_org"})));
        assert_eq!(moved["customer"]["hierarchy_level"], "User");
    }

    #[test]
    fn custom_levels_start_new_customers_at_the_top_and_nest_three_deep() {
        let mut store = Store::with_levels(three_levels());
        let region = ok(store.create(&json!({"provided_id": "emea"})));
        assert_eq!(region["customer"]["hierarchy_level"], "Region");
        ok(
            store.create(&json!({"provided_id": "acme", "parent_provided_id": "emea",
            "hierarchy_level_name": "Customer"})),
        );
        let user = ok(store.create(
            &json!({"provided_id": "alice", "parent_provided_id": "acme",
            "hierarchy_level_name": "User"}),
        ));
        assert_eq!(user["customer"]["hierarchy_level"], "User");
        // Skipping a level is still strictly lower.
        ok(
            store.create(&json!({"provided_id": "bob", "parent_provided_id": "emea",
            "hierarchy_level_name": "User"})),
        );
        let (status, message) = refused(store.create(&json!({"provided_id": "x",
            "parent_provided_id": "alice", "hierarchy_level_name": "User"})));
        assert_eq!(status, 400);
        assert!(
            message.contains("lowest hierarchy level `User`"),
            "{message}"
        );
    }

    #[test]
    fn hierarchy_levels_are_one_to_three_distinct_non_empty_names() {
        assert_eq!(
            HierarchyLevels::parse(" Region , Customer,User")
                .unwrap()
                .names(),
            ["Region", "Customer", "User"]
        );
        assert_eq!(
            HierarchyLevels::parse("Customer").unwrap().names(),
            ["Customer"]
        );
        assert_eq!(HierarchyLevels::default().names(), DEFAULT_HIERARCHY_LEVELS);
        for (text, why) in [
            ("", "empty name"),
            ("Customer,,User", "level 2 has an empty name"),
            ("Customer, ", "level 2 has an empty name"),
            ("A,B,C,D", "expected 1 to 3 level names"),
            ("Customer,User,Customer", "`Customer` is named twice"),
        ] {
            let error = HierarchyLevels::parse(text).unwrap_err();
            assert!(error.contains(why), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_single_level_team_has_no_parents() {
        let mut store = Store::with_levels(HierarchyLevels::parse("Customer").unwrap());
        ok(store.create(&json!({"provided_id": "org"})));
        let (status, _) = refused(store.create(
            &json!({"provided_id": "c", "parent_provided_id": "org", "hierarchy_level_name": "Customer"}),
        ));
        assert_eq!(status, 400);
    }

    #[test]
    fn create_is_get_or_create() {
        let mut store = Store::default();
        let first =
            ok(store.create(&json!({"provided_id": "a", "name": "A", "properties": {"k": 1}})));
        assert_eq!(first["new_customer"], true);
        assert_eq!(first["customer"]["hierarchy_level"], "Customer");
        assert_eq!(first["customer"]["token"].as_str().unwrap().len(), 64);
        let again = ok(store.create(&json!({"provided_id": "a", "name": "ignored"})));
        assert_eq!(again["new_customer"], false);
        assert_eq!(again["customer"]["name"], "A");
        assert_eq!(again["customer"]["token"], first["customer"]["token"]);
    }

    #[test]
    fn update_changes_only_what_is_sent_and_replaces_properties() {
        let mut store = Store::default();
        ok(store.create(&json!({"provided_id": "a", "name": "A", "properties": {"x": 1, "y": 2}})));
        let updated = ok(store.update(&json!({"provided_id": "a", "properties": {"x": 3}})));
        assert_eq!(updated["customer"]["name"], "A");
        assert_eq!(updated["customer"]["properties"], json!({"x": 3}));
        let renamed = ok(store.update(&json!({"provided_id": "a", "new_provided_id": "b"})));
        assert_eq!(renamed["customer"]["provided_id"], "b");
        assert_eq!(store.get(&json!({"provided_id": "a"})).unwrap_err().0, 404);
    }

    #[test]
    fn parents_must_be_higher_and_children_inherit() {
        let mut store = Store::default();
        ok(store.create(
            &json!({"provided_id": "org", "properties": {"region": "eu", "tier": 1},
                                 "mapping": {"40": "213"}}),
        ));
        let same_level = store.create(&json!({"provided_id": "c", "parent_provided_id": "org"}));
        assert_eq!(same_level.unwrap_err().0, 400);
        let child = ok(
            store.create(&json!({"provided_id": "c", "parent_provided_id": "org",
            "hierarchy_level_name": "User", "properties": {"tier": 2}})),
        );
        assert_eq!(
            child["customer"]["computed_properties"],
            json!({"region": "eu", "tier": 2})
        );
        assert_eq!(
            child["customer"]["computed_parent_schema_datasource_mapping"],
            json!({"40": "213"})
        );
        let children = ok(store.list(&query(&[("parent_provided_id", "org")])));
        assert_eq!(children["customers"].as_array().unwrap().len(), 1);
        assert_eq!(
            store
                .create(&json!({"provided_id": "x", "hierarchy_level_name": "Nope"}))
                .unwrap_err()
                .0,
            400
        );
    }

    #[test]
    fn delete_cascades_to_descendants() {
        // Three levels, so that the cascade reaches a grandchild.
        let mut store = Store::with_levels(three_levels());
        let org = ok(store.create(&json!({"provided_id": "org"})));
        ok(store.create(&json!({"provided_id": "mid", "parent_provided_id": "org", "hierarchy_level_name": "Customer"})));
        ok(store.create(&json!({"provided_id": "leaf", "parent_provided_id": "mid", "hierarchy_level_name": "User"})));
        ok(store.create(&json!({"provided_id": "other"})));
        ok(store.delete(&json!({"current_token": org["customer"]["token"]})));
        let left = ok(store.list(&BTreeMap::new()));
        let ids: Vec<&str> = left["customers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["provided_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["other"]);
        assert_eq!(
            store
                .delete(&json!({"current_token": "nope"}))
                .unwrap_err()
                .0,
            404
        );
    }

    #[test]
    fn refresh_rotates_the_token() {
        let mut store = Store::default();
        let created = ok(store.create(&json!({"provided_id": "a"})));
        let old = created["customer"]["token"].clone();
        let refreshed = ok(store.refresh_token(&json!({"current_token": old})));
        assert_ne!(refreshed["customer"]["token"], old);
        assert_eq!(
            store
                .refresh_token(&json!({"current_token": old}))
                .unwrap_err()
                .0,
            404
        );
    }

    #[test]
    fn v2_paginates() {
        let mut store = Store::default();
        for id in ["a", "b", "c"] {
            ok(store.create(&json!({"provided_id": id})));
        }
        let page = ok(store.list_v2(
            &query(&[("page", "2"), ("pageSize", "2")]),
            V2_MAX_PAGE_SIZE,
        ));
        assert_eq!(page["total_count"], 3);
        assert_eq!(page["results"]["customers"][0]["provided_id"], "c");
        assert_eq!(
            store
                .list_v2(&query(&[("page", "0")]), V2_MAX_PAGE_SIZE)
                .unwrap_err()
                .0,
            400
        );
        // A cap below the size asked for: smaller pages, numbered in the size served.
        let capped = ok(store.list_v2(&query(&[("page", "2"), ("page_size", "1000")]), 1));
        assert_eq!(capped["total_count"], 3);
        assert_eq!(capped["results"]["customers"][0]["provided_id"], "b");
    }

    #[test]
    fn bad_fields_are_400() {
        let mut store = Store::default();
        assert_eq!(store.create(&json!({"name": "no id"})).unwrap_err().0, 400);
        assert_eq!(
            store
                .create(&json!({"provided_id": "a", "properties": [1]}))
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(
            store
                .create(&json!({"provided_id": "a", "emails": "x"}))
                .unwrap_err()
                .0,
            400
        );
    }
}
