from .ledger import (
    ConsumptionRecord,
    CreditAccount,
    CreditLot,
    EntryKind,
    Hold,
    HoldLine,
    HoldStatus,
    LedgerEntry,
    LotCategory,
    LotStatus,
    SpendingLimit,
)
from .offers import BundleItem, Cycle, Offer, OfferGroup, OfferKind, OfferPrice, Tag
from .orders import Order, OrderEvent, OrderStatus

__all__ = [
    "BundleItem",
    "ConsumptionRecord",
    "CreditAccount",
    "CreditLot",
    "EntryKind",
    "Hold",
    "HoldLine",
    "HoldStatus",
    "LotCategory",
    "LotStatus",
    "Cycle",
    "LedgerEntry",
    "Offer",
    "OfferGroup",
    "OfferKind",
    "OfferPrice",
    "Order",
    "OrderEvent",
    "OrderStatus",
    "SpendingLimit",
    "Tag",
]
