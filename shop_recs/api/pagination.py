"""Pagination of the staff lists: ``?page=`` and ``?page_size=`` up to a maximum."""

from rest_framework.pagination import PageNumberPagination


class StaffPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
