"""The fixed word lists the demo population is drawn from: names, companies, titles, countries, user agents.

Written by hand rather than taken from Faker: the generator samples these with numpy indices (one
vectorised draw per column instead of one Python call per lead, which is what makes 10 million leads
feasible), and pinning the lists here keeps a seed's output byte-identical across library upgrades.
Every string is plain ASCII without quotes or backslashes, so it can be spliced into JSON text as is
(``tests/demo`` checks this).
"""
from __future__ import annotations

FIRST_NAMES = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William", "Elizabeth",
    "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Christopher", "Nancy", "Daniel", "Lisa", "Matthew", "Betty", "Anthony", "Margaret", "Mark", "Sandra",
    "Donald", "Ashley", "Steven", "Kimberly", "Paul", "Emily", "Andrew", "Donna", "Joshua", "Michelle",
    "Kenneth", "Carol", "Kevin", "Amanda", "Brian", "Dorothy", "George", "Melissa", "Timothy", "Deborah",
    "Ronald", "Stephanie", "Edward", "Rebecca", "Jason", "Sharon", "Jeffrey", "Laura", "Ryan", "Cynthia",
    "Jacob", "Kathleen", "Gary", "Amy", "Nicholas", "Angela", "Eric", "Shirley", "Jonathan", "Anna",
    "Oliver", "Amelia", "Harry", "Isla", "Jack", "Ava", "Noah", "Mia", "Leo", "Freya",
    "Lukas", "Hannah", "Felix", "Lena", "Maximilian", "Lea", "Paul", "Sophie", "Jonas", "Marie",
    "Louis", "Camille", "Hugo", "Chloe", "Arthur", "Manon", "Jules", "Ines", "Gabriel", "Lucie",
    "Daan", "Emma", "Sem", "Julia", "Finn", "Tess", "Liam", "Olivia", "Lucas", "Charlotte",
    "Priya", "Arjun", "Wei", "Mei", "Hiroshi", "Yuki", "Carlos", "Sofia", "Mateo", "Valentina",
    "Ahmed", "Fatima", "Omar", "Aisha", "Ivan", "Olga", "Chen", "Li", "Raj", "Ananya",
)

LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
    "Evans", "Edwards", "Collins", "Stewart", "Morris", "Murphy", "Cook", "Rogers", "Morgan", "Peterson",
    "Hughes", "Wood", "Turner", "Walsh", "Patel", "Khan", "Shah", "Singh", "Kumar", "Wang",
    "Mueller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
    "Bernard", "Dubois", "Durand", "Lefebvre", "Moreau", "Laurent", "Simon", "Michel", "Leroy", "Roux",
    "DeJong", "Jansen", "DeVries", "VanDijk", "Bakker", "Visser", "Smit", "Meijer", "Mulder", "Bos",
    "Kelly", "Ryan", "Byrne", "Oconnor", "Doyle", "Tanaka", "Suzuki", "Kim", "Park", "Silva",
)

# Gibberish or placeholder names typed into forms by people who do not want to be contacted.
JUNK_NAMES = (
    ("asdf", "qwerty"), ("Test", "Test"), ("test", "user"), ("aaa", "bbb"), ("xxx", "xxx"),
    ("qwe", "rty"), ("Mickey", "Mouse"), ("John", "Doe"), ("first", "last"), ("sdfsdf", "sdfsdf"),
    ("jkl", "jkl"), ("N", "A"),
)

DISPOSABLE_DOMAINS = (
    "mailinator.com", "guerrillamail.com", "10minutemail.com", "yopmail.com", "trashmail.com",
    "tempmail.com", "sharklasers.com", "getnada.com", "throwawaymail.com", "dispostable.com",
)
ROLE_LOCALS = ("info", "sales", "admin", "contact", "marketing", "support", "hello", "office")
FREEMAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "gmx.de", "orange.fr")

COMPANY_HEADS = (
    "Northwind", "Blue Harbor", "Summit", "Brightline", "Ironwood", "Silverleaf", "Redstone", "Clearwater",
    "Evergreen", "Keystone", "Bluebird", "Granite", "Oakridge", "Pinecrest", "Lakeshore", "Highgate",
    "Westfield", "Eastbridge", "Stonebridge", "Greenfield", "Falcon", "Atlas", "Orion", "Vertex", "Nimbus",
    "Quantum", "Helix", "Nova", "Apex", "Zenith", "Polaris", "Meridian", "Cobalt", "Crimson", "Amber",
    "Horizon", "Pioneer", "Sterling", "Vanguard", "Beacon", "Cascade", "Harbor", "Copper", "Maple",
    "Willow", "Cedar", "Aspen", "Juniper", "Sequoia", "Riverbend", "Foxglove", "Kestrel", "Lumen",
    "Parallax", "Tessera", "Arbor", "Brookside", "Fairview", "Hollow Creek", "Silver Lake",
)
COMPANY_TAILS = (
    "Analytics", "Systems", "Labs", "Software", "Solutions", "Technologies", "Dynamics", "Partners",
    "Group", "Networks", "Health", "Logistics", "Capital", "Media", "Retail", "Manufacturing",
    "Consulting", "Cloud", "Data", "Robotics", "Energy", "Foods", "Education", "Insurance",
)

INDUSTRIES = (
    "Software", "SaaS", "Financial Services", "Professional Services", "Marketing and Advertising",
    "Healthcare", "Manufacturing", "Retail", "Education", "Media", "Telecommunications",
    "Government", "Non-profit", "Logistics", "Real Estate", "Hospitality",
)
# How much more likely an industry is for a lead with full intent than for one with none (log scale):
# the product sells to software, finance and agencies; schools and government rarely buy.
INDUSTRY_BASE = (12, 10, 9, 8, 7, 7, 8, 7, 6, 5, 4, 4, 4, 4, 3, 3)
INDUSTRY_SLOPE = (1.6, 1.8, 1.2, 1.0, 1.2, 0.0, -0.3, -0.2, -1.5, 0.2, 0.0, -1.5, -1.8, -0.6, -0.8, -1.0)

SENIORITIES = ("c_level", "vp", "director", "manager", "individual", "student")
SENIORITY_BASE = (5, 7, 12, 24, 40, 8)
SENIORITY_SLOPE = (2.4, 2.2, 1.8, 0.6, -0.6, -5.0)
TITLES = {
    "c_level": ("CEO", "CTO", "CMO", "Chief Revenue Officer", "COO", "CFO", "Founder and CEO"),
    "vp": ("VP Marketing", "VP Sales", "VP Engineering", "VP Revenue Operations", "VP Growth",
           "VP Demand Generation"),
    "director": ("Director of Marketing", "Director of Demand Generation", "Sales Director",
                 "Director of Marketing Operations", "Head of Growth", "Director of Sales Operations"),
    "manager": ("Marketing Manager", "Sales Operations Manager", "Growth Manager", "Product Marketing Manager",
                "Marketing Operations Manager", "Demand Generation Manager", "Account Manager"),
    "individual": ("Marketing Specialist", "Sales Development Representative", "Account Executive",
                   "Content Writer", "Data Analyst", "Software Engineer", "Marketing Coordinator",
                   "Customer Success Associate"),
    "student": ("Student", "MBA Candidate", "Graduate Student", "Research Assistant", "Undergraduate"),
}

# Sold markets first; the rest are out of market. (code, base weight, top-level domain, company suffix)
COUNTRIES = (
    ("US", 44, "com", "Inc"), ("GB", 12, "co.uk", "Ltd"), ("DE", 9, "de", "GmbH"), ("FR", 6, "fr", "SAS"),
    ("CA", 6, "ca", "Inc"), ("AU", 5, "com.au", "Pty Ltd"), ("NL", 4, "nl", "BV"),
    ("IN", 4, "in", "Pvt Ltd"), ("BR", 2.5, "com.br", "Ltda"), ("NG", 1.5, "ng", "Ltd"),
    ("PK", 1.2, "pk", "Pvt Ltd"), ("ID", 1.2, "co.id", "PT"), ("PH", 1.0, "ph", "Inc"),
    ("VN", 0.8, "vn", "JSC"), ("EG", 0.8, "eg", "SAE"), ("MX", 1.0, "mx", "SA de CV"),
)
SOLD_MARKETS = ("US", "GB", "DE", "FR", "CA", "AU", "NL")

# Real user agents of the browsers B2B visitors use; IE 11 is the one the product does not support.
USER_AGENTS = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36", 40),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36", 16),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36", 3),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.6723.58 Mobile Safari/537.36", 3),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", 11),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", 5),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.2849.68", 11),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0", 5),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14.7; rv:132.0) Gecko/20100101 Firefox/132.0", 2),
    ("Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko", 3),
)
IE11_INDEX = len(USER_AGENTS) - 1

SITE = "https://www.example.com"
BLOG_SLUGS = (
    "what-is-lead-scoring", "mql-vs-sql", "b2b-buyer-journey", "email-benchmarks-2026", "intent-data-101",
    "video-marketing-funnel", "account-based-marketing", "sales-marketing-alignment", "lead-nurturing-playbook",
    "predictive-scoring-explained", "crm-hygiene", "demand-gen-metrics",
)
DOCS_SLUGS = (
    "api/authentication", "api/events", "integrations/salesforce", "integrations/hubspot", "security/soc2",
    "sdk/python", "sdk/javascript", "architecture", "data-retention", "webhooks",
)
CASE_SLUGS = ("acme-logistics", "helix-health", "northwind-saas", "atlas-finance", "orion-media", "vertex-retail")
CAREER_SLUGS = ("", "/engineering", "/sales", "/marketing")
REFERRERS = (
    "https://www.google.com/", "https://www.linkedin.com/", "https://www.bing.com/", "https://news.ycombinator.com/",
    "https://www.g2.com/", "https://twitter.com/", "",
)

RESOURCE_TYPES = ("whitepaper", "ebook", "datasheet", "report", "template", "webinar_recording", "checklist")
SOCIAL_NETWORKS = ("linkedin", "twitter", "facebook", "youtube", "instagram")
SOCIAL_NETWORK_WEIGHTS = (55, 18, 10, 12, 5)
SOCIAL_ACTIONS = ("like", "share", "comment", "follow", "click")
FORM_IDS = ("newsletter", "contact_us", "webinar_registration", "gated_content", "event_registration", "pricing_quote")
PRODUCT_FEATURES = ("dashboard", "scoring_model", "crm_sync", "video_heatmap", "alerts", "reports", "api", "import")
TRIAL_PLANS = ("starter", "growth", "enterprise")
DEMO_SOURCES = ("pricing_page", "homepage", "video", "contact_sales", "docs")
MEETING_TYPES = ("discovery", "demo", "technical_review", "pricing")
LOST_REASONS = ("no_budget", "chose_competitor", "no_decision", "timing", "missing_feature")

# (campaign_id, campaign_type, campaign_name, email_subject)
CAMPAIGNS = (
    ("cmp-cold-01", "cold_outreach", "Outbound Q1 RevOps", "Quick question about your lead routing"),
    ("cmp-cold-02", "cold_outreach", "Outbound Q2 Marketing Ops", "Is lead scoring on your roadmap"),
    ("cmp-cold-03", "cold_outreach", "Outbound Q3 Demand Gen", "Idea for your MQL backlog"),
    ("cmp-cold-04", "cold_outreach", "Outbound Q4 Sales Leaders", "Following up on pipeline quality"),
    ("cmp-nurture-01", "nurture", "Monthly Newsletter", "This month in B2B demand generation"),
    ("cmp-nurture-02", "nurture", "Lead Scoring Course", "Lesson: fit versus engagement"),
    ("cmp-nurture-03", "nurture", "Webinar Invitations", "Live: scoring video engagement"),
    ("cmp-nurture-04", "nurture", "Product Updates", "New: real-time alerts for hot leads"),
    ("cmp-nurture-05", "nurture", "Case Study Series", "How Northwind doubled SQLs"),
    ("cmp-sales-01", "sales_follow_up", "Demo Follow-up", "Your demo recording and next steps"),
    ("cmp-sales-02", "sales_follow_up", "Trial Check-in", "How is your trial going"),
    ("cmp-sales-03", "sales_follow_up", "Proposal", "Proposal and pricing for your team"),
)
