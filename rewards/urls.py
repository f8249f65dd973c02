from django.urls import path

from rewards import views

urlpatterns = [
    path("rewards/claim", views.ClaimView.as_view(), name="rewards-claim"),
    path("rewards/history", views.HistoryView.as_view(), name="rewards-history"),
]
