-- Reference lists the engine joins against (filled by the store after migrating, from maintained packages).
CREATE TABLE ref_disposable_domains (domain VARCHAR PRIMARY KEY);
