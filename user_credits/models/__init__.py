from .ledger import (
    ConsumptionRecord,
    CreditAccount,
    CreditLot,
    EntryKind,
    LedgerEntry,
    LotCategory,
    LotStatus,
)
from .offers import BundleItem, Cycle, Offer, OfferGroup, OfferKind, Tag
from .orders import Order, OrderEvent, OrderStatus

__all__ = [
    "BundleItem",
    "ConsumptionRecord",
    "CreditAccount",
    "CreditLot",
    "EntryKind",
    "LotCategory",
    "LotStatus",
    "Cycle",
    "LedgerEntry",
    "Offer",
    "OfferGroup",
    "OfferKind",
    "Order",
    "OrderEvent",
    "OrderStatus",
    "Tag",
]
