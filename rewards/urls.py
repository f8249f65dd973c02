from django.urls import path

from chainlearn.fastpath import hot_read
from rewards import views

urlpatterns = [
    path("rewards/claim", views.ClaimView.as_view(), name="rewards-claim"),
    path("rewards/history", hot_read(views.HistoryView), name="rewards-history"),
]
