"""The bank's 40 products with their eligibility and responsible-lending rules (data only).

``price`` is the yearly cost to the customer (annual fee, arrangement fee or insurance premium;
0 for savings); ``tier`` (0..1) is how premium a product is. Products in the same exclusion group
exclude each other (one residential mortgage, one personal loan from the core range, one card from
the student/builder/premium ladder, one ISA per year).
"""

from __future__ import annotations

from dataclasses import dataclass

PRODUCT_TYPES = ("credit_card", "personal_loan", "mortgage", "savings", "insurance")


@dataclass(frozen=True)
class ProductSpec:
    title: str
    product_type: str
    category: str
    price: float
    margin: float
    tier: float
    blurb: str
    min_age: int | None = 18
    max_age: int | None = None
    min_income: float | None = None
    min_credit_score: int | None = None
    max_dti: float | None = None
    requires_no_arrears: bool = False
    group: str | None = None


P = ProductSpec
_LEND = {"requires_no_arrears": True}

PRODUCTS: tuple[ProductSpec, ...] = (
    # credit cards
    P("Student Credit Card", "credit_card", "Cards>Credit>Student", 0, 0.15, 0.1,
      "a low-limit card for students building their first credit history", max_age=25, max_dti=0.6, group="card_ladder"),
    P("Everyday Credit Card", "credit_card", "Cards>Credit>Everyday", 0, 0.18, 0.3,
      "a no-fee card for everyday spending with contactless and app controls",
      min_income=12_000, min_credit_score=580, max_dti=0.5, **_LEND),
    P("Cashback Credit Card", "credit_card", "Cards>Credit>Rewards", 36, 0.2, 0.5,
      "earn cashback on groceries, fuel and online shopping",
      min_income=20_000, min_credit_score=640, max_dti=0.45, **_LEND),
    P("Travel Rewards Card", "credit_card", "Cards>Credit>Rewards", 95, 0.22, 0.7,
      "air miles, no foreign transaction fees and travel perks", min_age=21,
      min_income=35_000, min_credit_score=690, max_dti=0.4, **_LEND),
    P("Platinum Credit Card", "credit_card", "Cards>Credit>Premium", 195, 0.25, 0.85,
      "a premium card with lounge access, concierge and purchase protection", min_age=21,
      min_income=60_000, min_credit_score=720, max_dti=0.38, group="card_ladder", **_LEND),
    P("Premium Metal Card", "credit_card", "Cards>Credit>Premium", 450, 0.3, 1.0,
      "our exclusive metal card with unlimited lounge access and high limits", min_age=25,
      min_income=120_000, min_credit_score=760, max_dti=0.35, group="card_ladder", **_LEND),
    P("Balance Transfer Card", "credit_card", "Cards>Credit>Balance-transfer", 0, 0.12, 0.4,
      "move existing card balances and pay no interest for 24 months",
      min_income=15_000, min_credit_score=620, max_dti=0.5, **_LEND),
    P("Credit Builder Card", "credit_card", "Cards>Credit>Builder", 0, 0.1, 0.0,
      "a secured card that helps rebuild a credit score with a small limit", max_dti=0.7, group="card_ladder"),
    # personal loans
    P("Small Personal Loan", "personal_loan", "Lending>Personal>Small", 0, 0.08, 0.3,
      "borrow 1,000 to 5,000 over one to three years at a fixed rate",
      min_income=10_000, min_credit_score=600, max_dti=0.45, group="core_loan", **_LEND),
    P("Personal Loan", "personal_loan", "Lending>Personal>Standard", 0, 0.09, 0.5,
      "borrow 5,000 to 25,000 for whatever you are planning",
      min_income=20_000, min_credit_score=640, max_dti=0.4, group="core_loan", **_LEND),
    P("Large Personal Loan", "personal_loan", "Lending>Personal>Large", 0, 0.1, 0.7,
      "borrow up to 50,000 with repayments over up to seven years", min_age=21,
      min_income=40_000, min_credit_score=690, max_dti=0.36, group="core_loan", **_LEND),
    P("Car Finance Loan", "personal_loan", "Lending>Personal>Car", 0, 0.07, 0.5,
      "finance a new or used car with a fixed monthly payment", max_age=75,
      min_income=18_000, min_credit_score=620, max_dti=0.42, **_LEND),
    P("Home Improvement Loan", "personal_loan", "Lending>Personal>Home-improvement", 0, 0.08, 0.6,
      "fund a new kitchen, an extension or renovation work", min_age=21, max_age=75,
      min_income=25_000, min_credit_score=650, max_dti=0.4, **_LEND),
    P("Debt Consolidation Loan", "personal_loan", "Lending>Personal>Consolidation", 0, 0.06, 0.3,
      "combine existing debts into one lower monthly payment", min_age=21, max_age=70,
      min_income=18_000, min_credit_score=600, max_dti=0.55, group="core_loan", **_LEND),
    P("Green Energy Loan", "personal_loan", "Lending>Personal>Green", 0, 0.06, 0.6,
      "a discounted rate for solar panels, heat pumps and insulation", min_age=21, max_age=75,
      min_income=30_000, min_credit_score=660, max_dti=0.4, **_LEND),
    # mortgages
    P("First-Time Buyer Mortgage", "mortgage", "Lending>Mortgage>First-time-buyer", 999, 0.05, 0.5,
      "a 95% loan-to-value mortgage for buying your first home", min_age=21, max_age=45,
      min_income=30_000, min_credit_score=660, max_dti=0.4, group="residential_mortgage", **_LEND),
    P("2-Year Fixed Mortgage", "mortgage", "Lending>Mortgage>Fixed", 999, 0.05, 0.6,
      "fix your mortgage rate for two years", min_age=21, max_age=65,
      min_income=35_000, min_credit_score=680, max_dti=0.4, group="residential_mortgage", **_LEND),
    P("5-Year Fixed Mortgage", "mortgage", "Lending>Mortgage>Fixed", 999, 0.05, 0.6,
      "certainty of the same monthly payment for five years", min_age=21, max_age=65,
      min_income=35_000, min_credit_score=680, max_dti=0.4, group="residential_mortgage", **_LEND),
    P("Tracker Mortgage", "mortgage", "Lending>Mortgage>Tracker", 499, 0.05, 0.7,
      "a rate that tracks the base rate with no early repayment charges", min_age=21, max_age=65,
      min_income=40_000, min_credit_score=700, max_dti=0.38, group="residential_mortgage", **_LEND),
    P("Remortgage", "mortgage", "Lending>Mortgage>Remortgage", 0, 0.04, 0.6,
      "switch your existing mortgage to us with free valuation and legal work", min_age=25, max_age=70,
      min_income=35_000, min_credit_score=660, max_dti=0.42, group="residential_mortgage", **_LEND),
    P("Buy-to-Let Mortgage", "mortgage", "Lending>Mortgage>Buy-to-let", 1499, 0.06, 0.9,
      "finance a rental property with interest-only options", min_age=25, max_age=70,
      min_income=60_000, min_credit_score=720, max_dti=0.35, **_LEND),
    # savings
    P("Easy Access Saver", "savings", "Savings>Instant>Easy-access", 0, 0.02, 0.2,
      "save and withdraw whenever you like with a variable rate"),
    P("Cash ISA", "savings", "Savings>ISA>Cash", 0, 0.02, 0.4,
      "tax-free savings up to your yearly allowance with instant access", group="isa"),
    P("Fixed Rate ISA", "savings", "Savings>ISA>Fixed", 0, 0.025, 0.5,
      "a tax-free fixed rate for two years", group="isa"),
    P("1-Year Fixed Bond", "savings", "Savings>Fixed>Bond", 0, 0.03, 0.5,
      "lock away a lump sum for twelve months at a fixed rate"),
    P("2-Year Fixed Bond", "savings", "Savings>Fixed>Bond", 0, 0.03, 0.6,
      "a higher fixed rate for a two-year deposit"),
    P("Regular Saver", "savings", "Savings>Instant>Regular", 0, 0.01, 0.2,
      "save up to 300 a month at a boosted rate"),
    P("90-Day Notice Saver", "savings", "Savings>Notice>90-day", 0, 0.025, 0.4,
      "a better rate in return for ninety days notice of withdrawals"),
    P("Junior Saver", "savings", "Savings>Children>Junior", 0, 0.01, 0.3,
      "put money aside for your children until they turn eighteen", min_age=21),
    P("Premier Savings", "savings", "Savings>Instant>Premier", 0, 0.03, 0.9,
      "our best variable rate for premier customers with larger balances", min_income=75_000),
    P("Green Saver", "savings", "Savings>Instant>Green", 0, 0.02, 0.4,
      "savings that fund renewable energy projects"),
    # insurance
    P("Home Insurance", "insurance", "Insurance>Home>Buildings", 240, 0.2, 0.5,
      "buildings and contents cover with accidental damage options", min_age=21),
    P("Contents Insurance", "insurance", "Insurance>Home>Contents", 90, 0.22, 0.3,
      "cover for your belongings at home, ideal for renters"),
    P("Travel Insurance", "insurance", "Insurance>Travel>Annual", 75, 0.3, 0.4,
      "annual multi-trip cover including winter sports", max_age=79),
    P("Life Insurance", "insurance", "Insurance>Life>Term", 180, 0.25, 0.6,
      "term life cover to protect your family", max_age=70),
    P("Car Insurance", "insurance", "Insurance>Motor>Car", 520, 0.12, 0.5,
      "comprehensive car cover with a courtesy car"),
    P("Pet Insurance", "insurance", "Insurance>Pet>Lifetime", 300, 0.25, 0.4,
      "lifetime vet fee cover for cats and dogs"),
    P("Income Protection", "insurance", "Insurance>Life>Income-protection", 360, 0.3, 0.7,
      "a monthly income if illness or injury stops you working", max_age=60, min_income=20_000),
    P("Gadget Insurance", "insurance", "Insurance>Personal>Gadget", 60, 0.35, 0.2,
      "cover for phones, laptops and tablets against loss and damage"),
    P("Private Health Insurance", "insurance", "Insurance>Health>Private", 960, 0.2, 0.8,
      "fast access to private specialists and treatment", max_age=75, min_income=40_000),
)

# Yearly need for each product type by age band (rows: 18-24, 25-34, 35-49, 50-64, 65+).
AGE_BANDS = ("18-24", "25-34", "35-49", "50-64", "65+")
AGE_SHARE = (0.14, 0.24, 0.27, 0.2, 0.15)  # of customers
NEED_BY_AGE = (
    (1.0, 0.3, 0.0, 0.5, 0.3),
    (0.8, 0.8, 0.9, 0.5, 0.6),
    (0.5, 0.7, 0.6, 0.6, 0.8),
    (0.3, 0.4, 0.2, 0.9, 0.8),
    (0.1, 0.1, 0.0, 1.0, 0.7),
)
